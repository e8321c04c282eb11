//! `leasetso cert` end to end, as an operator runs it: a CA, a node and
//! clients in one directory; what each certificate names; keys only their
//! owner can read; nothing ever overwritten; bad input refused with a reason.

use std::path::Path;
use std::process::{Command, Output};

fn leasetso(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leasetso")).args(args).output().expect("run leasetso")
}

fn ok(args: &[&str]) -> String {
    let out = leasetso(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = leasetso(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The URI SANs of a certificate, as the certificate library reads them back.
fn uris(path: &Path) -> Vec<String> {
    let pem = std::fs::read_to_string(path).unwrap();
    let params = rcgen::CertificateParams::from_ca_cert_pem(&pem).expect("a certificate");
    params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            rcgen::SanType::URI(u) => Some(u.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

/// `openssl verify`: the certificate chains to the CA.
fn chains(ca: &Path, cert: &Path) -> bool {
    Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .expect("openssl (the openssl package) is installed")
        .status
        .success()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_cluster_in_three_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("certs");
    let d = d.to_str().unwrap();
    let printed = ok(&["cert", "create-ca", "--certs-dir", d, "--cluster-id", "42"]);
    assert!(printed.contains("ca.crt") && printed.contains("ca.key"), "{printed}");
    ok(&[
        "cert",
        "create-node",
        "--certs-dir",
        d,
        "--id",
        "2",
        "--host",
        "localhost, 127.0.0.1,node2.example",
    ]);
    ok(&["cert", "create-client", "--certs-dir", d, "--name", "root", "--admin"]);
    ok(&["cert", "create-client", "--certs-dir", d, "--name", "app-1"]);
    let p = |f: &str| dir.path().join("certs").join(f);

    assert_eq!(uris(&p("ca.crt")), ["leasetso://cluster/42"]);
    assert_eq!(uris(&p("node.2.crt")), ["leasetso://cluster/42/node/2"]);
    assert_eq!(uris(&p("client.root.crt")), ["leasetso://cluster/42/admin/root"]);
    assert_eq!(uris(&p("client.app-1.crt")), ["leasetso://cluster/42/client/app-1"]);
    for cert in ["node.2.crt", "client.root.crt", "client.app-1.crt"] {
        assert!(chains(&p("ca.crt"), &p(cert)), "{cert} does not chain to the CA");
    }
    #[cfg(unix)]
    for key in ["ca.key", "node.2.key", "client.root.key", "client.app-1.key"] {
        assert_eq!(mode(&p(key)), 0o600, "{key} is readable by others");
    }
}

#[test]
fn nothing_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    ok(&["cert", "create-ca", "--certs-dir", d, "--cluster-id", "1"]);
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let err = fails(&["cert", "create-ca", "--certs-dir", d, "--cluster-id", "1"]);
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("ca.crt")).unwrap(), ca, "the CA changed");
    ok(&["cert", "create-node", "--certs-dir", d, "--id", "1", "--host", "127.0.0.1"]);
    let node = std::fs::read(dir.path().join("node.1.key")).unwrap();
    let err = fails(&["cert", "create-node", "--certs-dir", d, "--id", "1", "--host", "127.0.0.1"]);
    assert!(err.contains("node.1.crt exists already"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("node.1.key")).unwrap(), node, "the key changed");
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let err = fails(&["cert", "create-node", "--certs-dir", d, "--id", "1", "--host", "localhost"]);
    assert!(err.contains("ca.crt"), "a node certificate without a CA: {err}");
    assert!(fails(&["cert", "create-ca", "--certs-dir", d, "--cluster-id", "0"]).contains("--cluster-id"));
    ok(&["cert", "create-ca", "--certs-dir", d, "--cluster-id", "3"]);
    assert!(
        fails(&["cert", "create-node", "--certs-dir", d, "--id", "0", "--host", "x"]).contains("1-based")
    );
    assert!(
        fails(&["cert", "create-node", "--certs-dir", d, "--id", "1", "--host", " , "]).contains("--host")
    );
    assert!(fails(&["cert", "create-client", "--certs-dir", d, "--name", "../evil"]).contains("--name"));
    assert!(!dir.path().join("node.1.key").exists() && !dir.path().join("client.../evil.key").exists());
}
