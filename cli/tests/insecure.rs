//! Plaintext only on loopback: `serve` refuses to listen anywhere else in
//! plaintext unless `--insecure` says so on purpose, and then it serves.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leasetso")).arg("serve").args(args).output().expect("run leasetso")
}

#[test]
fn a_plaintext_door_off_loopback_is_refused_naming_both_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    for (args, flag) in [
        (vec!["--listen", "0.0.0.0:0"], "--listen 0.0.0.0:0"),
        (vec!["--listen", "127.0.0.1:0", "--resp", "0.0.0.0:0"], "--resp 0.0.0.0:0"),
        (vec!["--listen", "127.0.0.1:0", "--metrics", "0.0.0.0:0"], "--metrics 0.0.0.0:0"),
    ] {
        let mut full = args.clone();
        full.extend(["--data", data]);
        let out = serve(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{full:?} started");
        assert!(err.contains(flag), "{full:?}: the address is not named: {err}");
        assert!(err.contains("--insecure") && err.contains("--certs-dir"), "{full:?}: {err}");
        assert!(!dir.path().join("data").exists(), "{full:?}: created the data dir before refusing");
    }
}

#[test]
fn insecure_serves_plaintext_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_leasetso"))
        .args(["serve", "--insecure", "--listen", "0.0.0.0:0", "--data"])
        .arg(&data)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start leasetso");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut serving = false;
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) if line.contains("serving on") => {
                serving = true;
                break;
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(serving, "serve --insecure on a wildcard did not serve");
}
