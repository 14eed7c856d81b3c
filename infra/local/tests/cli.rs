//! The `oms-local` binary's commands, run as a user runs them.

use std::process::Command;

fn oms_local(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oms-local"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("oms-local runs")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_names_every_command_and_option() {
    let o = Command::new(env!("CARGO_BIN_EXE_oms-local"))
        .arg("--help")
        .output()
        .unwrap();
    let help = stdout(&o);
    for word in [
        "demo",
        "dlq",
        "order",
        "provision",
        "--port",
        "--data-dir",
        "--config",
        "--aws-endpoint",
        "--aws",
        "OMS_STAFF_TOKEN",
        "OMS_CHANNEL_KEY_",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
}

#[test]
fn operator_commands_work_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let o = oms_local(dir.path(), &["provision"]);
    assert!(o.status.success(), "{o:?}");
    assert!(dir.path().join("oms.sqlite").exists());

    let o = oms_local(dir.path(), &["dlq", "list"]);
    assert!(o.status.success(), "{o:?}");
    let listed = stdout(&o);
    assert!(
        listed.contains("numbering-dlq: 0 message(s)")
            && listed.contains("notifications-dlq: 0 message(s)"),
        "{listed}"
    );

    let o = oms_local(dir.path(), &["dlq", "redrive", "--queue", "review"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        stdout(&o),
        "moved 0 message(s) from review-dlq back to review\n"
    );

    let o = oms_local(dir.path(), &["order", "show", "2026112700001"]);
    assert!(!o.status.success(), "an unknown order is an error");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no order 2026112700001"),
        "{o:?}"
    );
}
