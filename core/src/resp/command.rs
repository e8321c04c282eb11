//! A request's words recognised as one of the commands this door answers.

use crate::timestamp::MAX_LOGICAL;

use super::parse::{Args, RespError, parse_int, parse_uint, split};
use super::reply::ErrorReply;

/// What `COMMAND` asks (redis-cli asks `COMMAND DOCS` for its hints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND`, `COMMAND LIST`, `COMMAND DOCS ...`: an empty list.
    List,
    /// `COMMAND COUNT`: 0.
    Count,
    /// `COMMAND INFO name...`: a null per name.
    Info {
        /// How many names were asked about.
        names: usize,
    },
}

/// One request, recognised. Names and subcommands are case-insensitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// An empty line or an empty array: Redis answers nothing, nor do we.
    Empty,
    /// `TSO [count]`: `count` timestamps (1 if absent), `1..2^18`.
    Tso {
        /// How many.
        count: u32,
    },
    /// `PING [message]`.
    Ping {
        /// Echoed as a bulk string; without one the answer is `+PONG`.
        message: Option<&'a [u8]>,
    },
    /// `ECHO message` (`redis-cli --pipe` ends its input with one).
    Echo {
        /// Echoed as a bulk string.
        message: &'a [u8],
    },
    /// `HELLO [2 [AUTH user pass] [SETNAME name]]`: RESP2 only.
    Hello {
        /// A `SETNAME` option.
        name: Option<&'a [u8]>,
        /// An `AUTH` option's password.
        password: Option<&'a [u8]>,
    },
    /// `AUTH [user] password`: the door's password (any user name).
    Auth {
        /// The password given.
        password: &'a [u8],
    },
    /// `COMMAND [...]`: this door describes no commands.
    Command(CommandQuery),
    /// `CLIENT SETNAME name`.
    ClientSetName {
        /// The new name (empty clears it).
        name: &'a [u8],
    },
    /// `CLIENT SETINFO attribute value`: accepted and forgotten.
    ClientSetInfo,
    /// `CLIENT GETNAME`.
    ClientGetName,
    /// `CLIENT ID`.
    ClientId,
    /// `INFO [section...]`.
    Info {
        /// Whether the `server` section is asked for (by default it is);
        /// other sections are empty.
        server: bool,
    },
    /// `SELECT 0`: the only database.
    Select,
    /// `CONFIG GET parameter...` (redis-benchmark asks `save` and
    /// `appendonly`; this door persists no keys, so `""` and `no`).
    ConfigGet {
        /// The parameters asked for.
        params: Args<'a>,
    },
    /// `QUIT`: `+OK`, then the server closes.
    Quit,
    /// A well-framed command that cannot run: answered with this error, and
    /// the connection goes on.
    Invalid(ErrorReply<'a>),
}

impl<'a> Command<'a> {
    /// Takes the first request off `bytes`: `Ok(Some((command, consumed)))`,
    /// `Ok(None)` until the whole request has arrived, or an error as soon as
    /// the bytes cannot become a request (a length over its limit is refused
    /// from its digits, before the CRLF or the data).
    pub fn parse(bytes: &'a [u8]) -> Result<Option<(Command<'a>, usize)>, RespError> {
        Ok(split(bytes)?.map(|(args, used)| (Command::from_args(&args), used)))
    }

    /// Recognises the words of a request.
    pub fn from_args(args: &Args<'a>) -> Command<'a> {
        let Some(name) = args.get(0) else {
            return Command::Empty;
        };
        let n = args.len();
        let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
        let arity = |command| Command::Invalid(ErrorReply::WrongArity { command });
        if is("TSO") {
            return match (n, args.get(1)) {
                (1, _) => Command::Tso { count: 1 },
                (2, Some(count)) => match parse_uint(count) {
                    None => Command::Invalid(ErrorReply::NotInteger),
                    Some(0) => Command::Invalid(ErrorReply::ZeroCount),
                    Some(c) if c >= u64::from(MAX_LOGICAL) => Command::Invalid(ErrorReply::CountTooLarge),
                    // Below 2^18, so it fits.
                    Some(c) => Command::Tso { count: c as u32 },
                },
                _ => arity("tso"),
            };
        }
        if is("AUTH") {
            return match (n, args.get(n.saturating_sub(1))) {
                (2 | 3, Some(password)) => Command::Auth { password },
                _ => arity("auth"),
            };
        }
        if is("PING") {
            return match n {
                1 | 2 => Command::Ping { message: args.get(1) },
                _ => arity("ping"),
            };
        }
        if is("ECHO") {
            return match args.get(1) {
                Some(message) if n == 2 => Command::Echo { message },
                _ => arity("echo"),
            };
        }
        if is("HELLO") {
            return hello(args);
        }
        let sub = args.get(1);
        let sub_is = |word: &str| sub.is_some_and(|s| s.eq_ignore_ascii_case(word.as_bytes()));
        if is("COMMAND") {
            return match sub {
                None => Command::Command(CommandQuery::List),
                Some(_) if sub_is("DOCS") || sub_is("LIST") => Command::Command(CommandQuery::List),
                Some(_) if sub_is("COUNT") => match n {
                    2 => Command::Command(CommandQuery::Count),
                    _ => arity("command|count"),
                },
                Some(_) if sub_is("INFO") => Command::Command(CommandQuery::Info { names: n - 2 }),
                Some(sub) => Command::Invalid(ErrorReply::UnknownSubcommand { command: "COMMAND", sub }),
            };
        }
        if is("CLIENT") {
            return match sub {
                None => arity("client"),
                Some(_) if sub_is("SETNAME") => match args.get(2) {
                    Some(name) if n == 3 => {
                        if name.iter().all(|b| (b'!'..=b'~').contains(b)) {
                            Command::ClientSetName { name }
                        } else {
                            Command::Invalid(ErrorReply::BadClientName)
                        }
                    }
                    _ => arity("client|setname"),
                },
                Some(_) if sub_is("SETINFO") => match n {
                    4 => Command::ClientSetInfo,
                    _ => arity("client|setinfo"),
                },
                Some(_) if sub_is("GETNAME") => match n {
                    2 => Command::ClientGetName,
                    _ => arity("client|getname"),
                },
                Some(_) if sub_is("ID") => match n {
                    2 => Command::ClientId,
                    _ => arity("client|id"),
                },
                Some(sub) => Command::Invalid(ErrorReply::UnknownSubcommand { command: "CLIENT", sub }),
            };
        }
        if is("INFO") {
            let sections = args.tail(1);
            let server = sections.is_empty()
                || sections.as_slice().iter().any(|s| {
                    ["server", "default", "all", "everything"]
                        .iter()
                        .any(|w| s.eq_ignore_ascii_case(w.as_bytes()))
                });
            return Command::Info { server };
        }
        if is("SELECT") {
            return match (n, args.get(1)) {
                (2, Some(db)) => match parse_int(db) {
                    None => Command::Invalid(ErrorReply::NotInteger),
                    Some(0) => Command::Select,
                    Some(_) => Command::Invalid(ErrorReply::DbOutOfRange),
                },
                _ => arity("select"),
            };
        }
        if is("CONFIG") {
            return match sub {
                None => arity("config"),
                Some(_) if sub_is("GET") => match n {
                    2 => arity("config|get"),
                    _ => Command::ConfigGet { params: args.tail(2) },
                },
                Some(sub) => Command::Invalid(ErrorReply::UnknownSubcommand { command: "CONFIG", sub }),
            };
        }
        if is("QUIT") {
            return Command::Quit;
        }
        Command::Invalid(ErrorReply::UnknownCommand { name, args: args.tail(1) })
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`. This
/// door speaks RESP2 only: `HELLO 3` is refused with `-NOPROTO`, which
/// clients that try RESP3 first take as "fall back to RESP2". Its `AUTH`
/// option is checked as the `AUTH` command is (any user name).
fn hello<'a>(args: &Args<'a>) -> Command<'a> {
    let Some(version) = args.get(1) else {
        return Command::Hello { name: None, password: None };
    };
    match parse_int(version) {
        None => return Command::Invalid(ErrorReply::BadProtocolVersion),
        Some(2) => {}
        Some(_) => return Command::Invalid(ErrorReply::NoProto),
    }
    let (mut name, mut password) = (None, None);
    let mut i = 2;
    while let Some(option) = args.get(i) {
        let remaining = args.len() - i - 1;
        if option.eq_ignore_ascii_case(b"AUTH") && remaining >= 2 {
            password = args.get(i + 2);
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && remaining >= 1 {
            name = args.get(i + 1);
            i += 2;
        } else {
            return Command::Invalid(ErrorReply::HelloSyntax { option });
        }
    }
    Command::Hello { name, password }
}

#[cfg(test)]
mod tests {
    use crate::resp::fixtures::*;

    #[test]
    fn commands_round_trip_as_arrays_and_inline() {
        let cases: Vec<(Vec<&[u8]>, Command<'_>)> = vec![
            (vec![b"TSO"], Command::Tso { count: 1 }),
            (vec![b"tso", b"100"], Command::Tso { count: 100 }),
            (vec![b"TsO", b"262143"], Command::Tso { count: 262_143 }),
            (vec![b"PING"], Command::Ping { message: None }),
            (vec![b"ping", b"hi"], Command::Ping { message: Some(b"hi") }),
            (vec![b"ECHO", b"x"], Command::Echo { message: b"x" }),
            (vec![b"HELLO"], Command::Hello { name: None, password: None }),
            (vec![b"HELLO", b"2"], Command::Hello { name: None, password: None }),
            (vec![b"AUTH", b"pw"], Command::Auth { password: b"pw" }),
            (vec![b"auth", b"default", b"pw"], Command::Auth { password: b"pw" }),
            (
                vec![b"hello", b"2", b"AUTH", b"u", b"p", b"setname", b"me"],
                Command::Hello { name: Some(b"me"), password: Some(b"p") },
            ),
            (vec![b"COMMAND"], Command::Command(CommandQuery::List)),
            (vec![b"COMMAND", b"DOCS"], Command::Command(CommandQuery::List)),
            (vec![b"command", b"docs", b"get"], Command::Command(CommandQuery::List)),
            (vec![b"COMMAND", b"COUNT"], Command::Command(CommandQuery::Count)),
            (vec![b"COMMAND", b"INFO", b"get", b"set"], Command::Command(CommandQuery::Info { names: 2 })),
            (vec![b"CLIENT", b"SETNAME", b"app"], Command::ClientSetName { name: b"app" }),
            (vec![b"client", b"setinfo", b"LIB-NAME", b"redis-py"], Command::ClientSetInfo),
            (vec![b"CLIENT", b"GETNAME"], Command::ClientGetName),
            (vec![b"CLIENT", b"ID"], Command::ClientId),
            (vec![b"INFO"], Command::Info { server: true }),
            (vec![b"INFO", b"Server"], Command::Info { server: true }),
            (vec![b"INFO", b"memory"], Command::Info { server: false }),
            (vec![b"SELECT", b"0"], Command::Select),
            (vec![b"QUIT"], Command::Quit),
        ];
        for (words, expected) in cases {
            assert_eq!(parse(&array(&words)), expected, "{words:?}");
            let mut line = words.join(&b' ');
            line.extend_from_slice(b"\r\n");
            assert_eq!(parse(&line), expected, "inline {words:?}");
        }
        match parse(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n") {
            Command::ConfigGet { params } => assert_eq!(params.as_slice(), [b"save"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inline_forms() {
        assert_eq!(parse(b"PING\n"), Command::Ping { message: None });
        assert_eq!(parse(b"  tso \t 5  \r\n"), Command::Tso { count: 5 });
        assert_eq!(parse(b"\r\n"), Command::Empty);
        assert_eq!(parse(b"\n"), Command::Empty);
        assert_eq!(parse(b"*0\r\n"), Command::Empty);
        assert_eq!(parse(b"*-1\r\n"), Command::Empty);
    }

    #[test]
    fn invalid_commands_are_error_replies() {
        fn e<'a>(words: &[&'a [u8]]) -> ErrorReply<'a> {
            match cmd(words) {
                Command::Invalid(e) => e,
                other => panic!("{words:?} gave {other:?}"),
            }
        }
        assert_eq!(e(&[b"TSO", b"0"]), ErrorReply::ZeroCount);
        assert_eq!(e(&[b"TSO", b"262144"]), ErrorReply::CountTooLarge);
        assert_eq!(e(&[b"TSO", b"99999999999999999999"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b"ten"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b"-1"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b"010"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b""]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"TSO", b"1", b"2"]), ErrorReply::WrongArity { command: "tso" });
        assert_eq!(e(&[b"PING", b"a", b"b"]), ErrorReply::WrongArity { command: "ping" });
        assert_eq!(e(&[b"ECHO"]), ErrorReply::WrongArity { command: "echo" });
        assert_eq!(e(&[b"HELLO", b"3"]), ErrorReply::NoProto);
        assert_eq!(e(&[b"HELLO", b"1"]), ErrorReply::NoProto);
        assert_eq!(e(&[b"HELLO", b"x"]), ErrorReply::BadProtocolVersion);
        assert_eq!(e(&[b"HELLO", b"2", b"AUTH", b"u"]), ErrorReply::HelloSyntax { option: b"AUTH" });
        assert_eq!(
            e(&[b"COMMAND", b"GETKEYS"]),
            ErrorReply::UnknownSubcommand { command: "COMMAND", sub: b"GETKEYS" }
        );
        assert_eq!(e(&[b"COMMAND", b"COUNT", b"x"]), ErrorReply::WrongArity { command: "command|count" });
        assert_eq!(e(&[b"CLIENT"]), ErrorReply::WrongArity { command: "client" });
        assert_eq!(
            e(&[b"CLIENT", b"KILL"]),
            ErrorReply::UnknownSubcommand { command: "CLIENT", sub: b"KILL" }
        );
        assert_eq!(e(&[b"CLIENT", b"SETNAME"]), ErrorReply::WrongArity { command: "client|setname" });
        assert_eq!(e(&[b"CLIENT", b"SETNAME", b"a b"]), ErrorReply::BadClientName);
        assert_eq!(e(&[b"CLIENT", b"SETINFO", b"x"]), ErrorReply::WrongArity { command: "client|setinfo" });
        assert_eq!(e(&[b"CLIENT", b"GETNAME", b"x"]), ErrorReply::WrongArity { command: "client|getname" });
        assert_eq!(e(&[b"CLIENT", b"ID", b"x"]), ErrorReply::WrongArity { command: "client|id" });
        assert_eq!(e(&[b"SELECT", b"1"]), ErrorReply::DbOutOfRange);
        assert_eq!(e(&[b"SELECT", b"zero"]), ErrorReply::NotInteger);
        assert_eq!(e(&[b"SELECT"]), ErrorReply::WrongArity { command: "select" });
        assert_eq!(e(&[b"CONFIG"]), ErrorReply::WrongArity { command: "config" });
        assert_eq!(e(&[b"CONFIG", b"GET"]), ErrorReply::WrongArity { command: "config|get" });
        assert_eq!(
            e(&[b"CONFIG", b"SET", b"a", b"b"]),
            ErrorReply::UnknownSubcommand { command: "CONFIG", sub: b"SET" }
        );
        match e(&[b"GET", b"key"]) {
            ErrorReply::UnknownCommand { name, args } => {
                assert_eq!(name, b"GET");
                assert_eq!(args.as_slice(), [b"key"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
