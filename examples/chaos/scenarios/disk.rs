//! `disk`: the store's file system fills up, then space returns (needs root for a tmpfs).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ctx::{cleanup, wait_broker, Ctx};
use crate::gateway::Gateway;
use crate::load::{finish_clients, start_clients, wait_delivered, Ledger, Load, Sink};
use crate::proxy::Proxy;
use crate::report::{analyse, Row};

/// e. The store's disk fills up (a small tmpfs), then space returns; the broker is cut all
/// along and the gateway is killed at the end, so every acknowledged event must come from disk.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let proxy = Proxy::start(ctx.broker).await?;
    proxy.cut();
    let mut d = match FullDisk::start(ctx, "e", &proxy.url(&ctx.amqp)).await? {
        Ok(d) => d,
        Err(skipped) => return Ok(vec![skipped]),
    };
    let acks_at_full = d.ledger.acks.load(Ordering::Relaxed);
    let (filler, filled, refused_before) = fill_until_refused(&d.mnt, &d.ledger).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ready_full = d.gw.readyz().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused_full = d.ledger.refused("503") - refused_before;
    let acks_full = d.ledger.acks.load(Ordering::Relaxed) - acks_at_full;
    std::fs::remove_file(&filler)?;
    let acks_at_space = d.ledger.acks.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let acks_after = d.ledger.acks.load(Ordering::Relaxed) - acks_at_space;
    let ready_after = d.gw.readyz().await;
    finish_clients(d.tasks, &d.stop_new, &d.give_up, Duration::from_secs(20)).await;

    // Only what is on disk survives this.
    d.gw.kill9();
    proxy.restore();
    d.gw.start().await?;
    // The sink queue is declared by the relay's first connection, which is this one.
    wait_broker(&d.gw, true).await?;
    let sink = Sink::start(&ctx.amqp, &format!("{}-sink", d.run)).await?;
    let mut row = delivered_row(
        "e. store disk full, then space back",
        &d.ledger,
        &sink,
        filled,
        refused_full,
        &format!(", {acks_full} 2xx"),
        &ready_full,
    )
    .await;
    row.check(
        format!(
            "space back: {acks_after} 2xx in 8 s; readyz store={}",
            ready_after["store"]
        ),
        acks_after > 0,
    );
    d.gw.term().await;
    drop(sink);
    cleanup(ctx, &d.run).await;
    Ok(vec![row])
}

/// e2. The same with the broker up, so the relay records its progress in sled while the disk
/// is full. sled answers every write with the same error after an I/O failure, until a restart
/// (and a failed write-back of the dedup table holds until one too): the gateway must then
/// stop, exit 1, within its grace (30 s) for the service manager to restart it, rather than
/// relay nothing forever; restarted as a service manager would, every acknowledged event
/// arrives.
pub async fn run_broker_up(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let mut d = match FullDisk::start(ctx, "e2", &ctx.amqp).await? {
        Ok(d) => d,
        Err(skipped) => return Ok(vec![skipped]),
    };
    // The gateway's first connection declared the sink's queue.
    let sink = Sink::start(&ctx.amqp, &format!("{}-sink", d.run)).await?;
    let (filler, filled, refused_before) = fill_until_refused(&d.mnt, &d.ledger).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready_full = d.gw.readyz().await;
    std::fs::remove_file(&filler)?;
    // Space is back. What only a restart mends (sled's writes, the dedup table's write-back)
    // is said on /readyz, and the gateway exits within its grace of 30 s.
    let broken = |r: &serde_json::Value| {
        r["store"]
            .as_str()
            .is_some_and(|s| s.contains("sled") || s.contains("dedup index"))
    };
    let mut saw_broken = false;
    let mut exited = None;
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(45);
    while tokio::time::Instant::now() < watch_until {
        saw_broken |= broken(&d.gw.readyz().await);
        exited = d.gw.exited(Duration::from_millis(500)).await;
        if exited.is_some() {
            break;
        }
    }
    let ready_after = d.gw.readyz().await;
    if exited.is_some() {
        // What systemd's Restart=on-failure does.
        d.gw.start().await?;
    }
    finish_clients(d.tasks, &d.stop_new, &d.give_up, Duration::from_secs(20)).await;
    let mut row = delivered_row(
        "e2. store disk full with the broker up, then space back",
        &d.ledger,
        &sink,
        filled,
        d.ledger.refused("503") - refused_before,
        "",
        &ready_full,
    )
    .await;
    // sled writes the relay's progress and the indexer the dedup table all along, so the full
    // disk breaks them: a run where both came through (or the gateway died otherwise) did not
    // test what this row is for.
    row.check(
        match (saw_broken, exited) {
            (true, Some(status)) => {
                format!("space back, the store broken until a restart: the gateway exited ({status}) and was restarted")
            }
            (false, Some(status)) => {
                format!("the gateway exited ({status}) without /readyz saying why")
            }
            (true, None) => "space back, the store broken: the gateway still runs after 45 s".into(),
            (false, None) => format!(
                "the store came through the full disk (readyz store={}): nothing tested",
                ready_after["store"]
            ),
        },
        saw_broken && exited.and_then(|s| s.code()) == Some(1),
    );
    d.gw.term().await;
    drop(sink);
    cleanup(ctx, &d.run).await;
    Ok(vec![row])
}

/// What both rows start from: the store on a 64 MiB tmpfs with small segments (a full disk
/// fails commits only once the active segment's preallocated room, and a spare's, is used; with
/// the default 64 MiB that could outlast the window), the gateway on it (connected, when the
/// broker is reachable), and four clients posting every 20 ms for 2 s already.
struct FullDisk {
    run: String,
    mnt: PathBuf,
    gw: Gateway,
    ledger: Arc<Ledger>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop_new: CancellationToken,
    give_up: CancellationToken,
    /// Last: fields drop in order, and the store's disk goes after the gateway.
    _mount: Tmpfs,
}

impl FullDisk {
    /// `Ok(Err(row))`: skipped, mounting a tmpfs needs root.
    async fn start(ctx: &Ctx, tag: &str, amqp_url: &str) -> anyhow::Result<Result<Self, Row>> {
        let run = ctx.run_id(tag);
        let dir = ctx.work.join(&run);
        let mnt = dir.join("disk");
        std::fs::create_dir_all(&mnt)?;
        let Some(mount) = Tmpfs::mount(&mnt, "64m") else {
            let mut r = analyse(
                &format!("{tag}. disk full (SKIPPED)"),
                &Ledger::default(),
                &[],
            );
            r.check("mounting a tmpfs needs root; not run", true);
            return Ok(Err(r));
        };
        let sources = ctx.sources(tag, 4);
        *ctx.store_extra.lock().unwrap() = "segment_bytes = 262144".into();
        let gw = ctx.gateway_in(
            &dir,
            &mnt.join("store"),
            &run,
            amqp_url,
            true,
            &sources,
            86_400,
        );
        ctx.store_extra.lock().unwrap().clear();
        let mut gw = gw?;
        gw.start().await?;
        if amqp_url == ctx.amqp {
            wait_broker(&gw, true).await?;
        }
        let ledger = Arc::new(Ledger::default());
        let load = Load {
            run: run.clone(),
            sources,
            events: None,
            pace: Some(Duration::from_millis(20)),
            retry_after: Duration::from_millis(100),
        };
        let (stop_new, give_up) = (CancellationToken::new(), CancellationToken::new());
        let base = format!("http://{}", gw.public);
        let tasks = start_clients(&base, &load, &ledger, &stop_new, &give_up);
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(Ok(FullDisk {
            run,
            mnt,
            gw,
            ledger,
            tasks,
            stop_new,
            give_up,
            _mount: mount,
        }))
    }
}

/// Fills the disk, then waits (at most 30 s) for the first 503: commits fail once the
/// preallocated room is used, and how soon depends on where the segment stood. The filler's
/// path, its bytes and the 503s before.
async fn fill_until_refused(mnt: &Path, ledger: &Ledger) -> (PathBuf, u64, u64) {
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    let refused_before = ledger.refused("503");
    let full_until = tokio::time::Instant::now() + Duration::from_secs(30);
    while ledger.refused("503") == refused_before && tokio::time::Instant::now() < full_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (filler, filled, refused_before)
}

/// Both rows' end: waits until every acknowledged event arrived (at most 60 s), and checks
/// that the disk was filled and that it refused requests (503) while full.
async fn delivered_row(
    title: &str,
    ledger: &Ledger,
    sink: &Sink,
    filled: u64,
    refused_full: u64,
    also: &str,
    ready_full: &serde_json::Value,
) -> Row {
    wait_delivered(
        ledger,
        sink,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await;
    let mut row = analyse(title, ledger, &sink.seen.lock().unwrap());
    row.check(
        format!("filled the disk with {} MiB", filled >> 20),
        filled > 0,
    );
    row.check(
        format!(
            "while full: {refused_full} replies 503{also}; readyz store={}",
            ready_full["store"]
        ),
        refused_full > 0,
    );
    row
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let Ok(mut f) = std::fs::File::create(path) else {
        return 0;
    };
    let chunk = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k as u64,
        }
    }
    let _ = f.sync_all();
    n
}

/// A tmpfs mounted for the scenario, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
