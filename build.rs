//! Records the git revision for `hookgate --version` and the `hookgate_build_info` metric.
//! Outside a git checkout (a source tarball, a vendored copy) the revision is `unknown`;
//! `HOOKGATE_REVISION` set at build time wins (a packager that knows the revision).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HOOKGATE_REVISION");
    let revision = std::env::var("HOOKGATE_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HOOKGATE_REVISION={revision}");
}

fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    // Rebuild when HEAD moves (a commit or a checkout), so the binary never names a stale one.
    if let Ok(dir) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
    {
        if let Ok(dir) = String::from_utf8(dir.stdout) {
            let dir = dir.trim();
            println!("cargo:rerun-if-changed={dir}/HEAD");
            println!("cargo:rerun-if-changed={dir}/refs/heads");
        }
    }
    Some(rev)
}
