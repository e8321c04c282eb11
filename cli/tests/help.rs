//! The `leasetso` binary of this package: every subcommand answers `--help`,
//! and a command line it cannot parse fails with a usage message. (The
//! cross-process tests in `tests/` run this same binary: building this test
//! is what puts it beside them.)

use std::process::Command;

fn leasetso(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leasetso")).args(args).output().expect("run leasetso")
}

#[test]
fn every_subcommand_has_help() {
    let subs: &[&[&str]] = &[
        &["serve"],
        &["get-ts"],
        &["status"],
        &["primary", "show"],
        &["primary", "clear"],
        &["cert", "create-ca"],
        &["cert", "create-node"],
        &["cert", "create-client"],
    ];
    for sub in subs {
        let mut args = sub.to_vec();
        args.push("--help");
        let out = leasetso(&args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: leasetso"), "{args:?} printed no usage:\n{text}");
    }
}

#[test]
fn serve_names_both_runtimes() {
    let out = leasetso(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("std") && text.contains("smol"), "{text}");
}

#[test]
fn an_unknown_subcommand_fails_with_usage() {
    let out = leasetso(&["take-ts"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}
