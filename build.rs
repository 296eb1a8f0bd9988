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
    // Rebuild when HEAD moves (a commit, a checkout): watch HEAD, the branch it names and
    // packed-refs, where git keeps them (a worktree's HEAD is apart from the refs). Only files
    // that exist: a missing one would rerun this script on every build.
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    Some(rev)
}
