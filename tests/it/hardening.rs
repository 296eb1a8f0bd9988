//! Issue 11 through the real binary and the real HTTP stack: config that loses data or leaks
//! (class 6) and logs an attacker can write or that leak (class 7). Classes 4 and 8 live with
//! the other guards in `guards.rs`.

use std::process::Command;

const SECRET: &str = "hunter2-never-printed";

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "-c", path.to_str().unwrap()])
        .env_remove("HOOKGATE_CONFIG")
        .output()
        .expect("the hookgate binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn class6_check_refuses_an_empty_store_path_and_never_prints_a_secret() {
    let source =
        format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"]\n");
    let (ok, text) = check(&format!("[store]\npath = \"\"\n{source}"));
    assert!(!ok, "an empty store path loads: {text}");
    assert!(text.contains("store.path: must not be empty"), "{text}");

    for bad in [
        // A string where a list is expected: serde quotes the value.
        format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = \"{SECRET}\"\n"),
        // A syntax error on the secret's line: the TOML parser quotes the line.
        format!("[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = [\"{SECRET}\"\n"),
        // The broker password in a URL that does not parse.
        format!("[amqp]\nurl = \"amqp://guest:{SECRET}@[::1\"\n{source}"),
        format!("[amqp]\nurl = \"amqp:{SECRET}\"\n{source}"),
    ] {
        let (ok, text) = check(&bad);
        assert!(!ok, "{bad}");
        assert!(!text.contains("hunter2"), "{bad}\n=> {text}");
    }
    let (_, text) = check(&format!(
        "[[sources]]\nname = \"gh\"\nprovider = \"github\"\nsecrets = \"{SECRET}\"\n"
    ));
    assert!(
        text.contains("sources[0] (gh).secrets: invalid type: string"),
        "{text}"
    );
}
