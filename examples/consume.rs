//! Prints the CloudEvents envelopes waiting in a queue, with their AMQP properties.
//!
//! `cargo run --example consume -- --queue hookgate.github [--count 10] [--requeue]`
//!
//! Messages are acknowledged (removed) unless `--requeue` is given.

use clap::Parser;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::{Connection, ConnectionProperties};

#[derive(Parser)]
struct Args {
    /// Queue to read.
    #[arg(long)]
    queue: String,
    /// At most this many messages.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Put the messages back instead of acknowledging them.
    #[arg(long)]
    requeue: bool,
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    url: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let conn = Connection::connect(&args.url, ConnectionProperties::default()).await?;
        let channel = conn.create_channel().await?;
        let mut seen = 0;
        while seen < args.count {
            let Some(m) = channel
                .basic_get(args.queue.as_str().into(), BasicGetOptions::default())
                .await?
            else {
                break;
            };
            seen += 1;
            let p = &m.delivery.properties;
            println!(
                "routing_key={} message_id={} type={}",
                m.delivery.routing_key,
                p.message_id().as_ref().map_or("-", |s| s.as_str()),
                p.kind().as_ref().map_or("-", |s| s.as_str()),
            );
            match serde_json::from_slice::<serde_json::Value>(&m.delivery.data) {
                Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
                Err(_) => println!("{}", String::from_utf8_lossy(&m.delivery.data)),
            }
            if args.requeue {
                m.delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
            } else {
                m.delivery.ack(BasicAckOptions::default()).await?;
            }
        }
        println!("{seen} message(s)");
        conn.close(200, "done".into()).await?;
        Ok(())
    })
}
