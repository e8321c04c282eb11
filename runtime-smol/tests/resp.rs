//! The RESP door on the smol server: `TSO` as inline and array commands,
//! pipelined, `PING`, and a protocol error closing the connection.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Running;
use leasetso_smol::ServerConfig;

/// Reads until `lines` CRLF-terminated lines are in.
fn read_lines(stream: &mut TcpStream, lines: usize) -> Vec<String> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    let mut line = Vec::new();
    while got.len() < lines {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed after {got:?}");
        line.push(byte[0]);
        if line.ends_with(b"\r\n") {
            got.push(String::from_utf8(line[..line.len() - 2].to_vec()).unwrap());
            line.clear();
        }
    }
    got
}

#[test]
fn tso_ping_and_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path());
    cfg.resp = Some("127.0.0.1:0".parse().unwrap());
    let server = leasetso_smol::Server::bind(cfg).unwrap();
    let resp = server.resp_addr().expect("a RESP address");
    let running = Running::from_bound(server);
    assert!(smol::block_on(running.handle.wait_serving(Duration::from_secs(5))));
    let mut stream = TcpStream::connect(resp).unwrap();
    // Pipelined: inline TSO, array TSO 10, PING.
    stream.write_all(b"TSO\r\n*2\r\n$3\r\nTSO\r\n$2\r\n10\r\nPING\r\n").unwrap();
    let lines = read_lines(&mut stream, 3);
    let a: u64 = lines[0].strip_prefix(':').expect("an integer").parse().unwrap();
    let b: u64 = lines[1].strip_prefix(':').expect("an integer").parse().unwrap();
    assert!(b >= a + 10, "{a} then {b}");
    assert_eq!(lines[2], "+PONG");
    // A malformed array header: an error, then the server closes.
    stream.write_all(b"*x\r\n").unwrap();
    let lines = read_lines(&mut stream, 1);
    assert!(lines[0].starts_with("-ERR Protocol error"), "{lines:?}");
    let mut rest = Vec::new();
    stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0, "bytes after the error: {rest:?}");
    let stats = running.handle.stats();
    assert_eq!(stats.timestamps, 11);
}
