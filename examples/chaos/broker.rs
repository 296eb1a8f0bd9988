//! Direct broker operations of the driver: topology the gateway's config cannot express and
//! the scenarios' clean-up.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

/// Direct broker operations of the driver (topology the gateway's config cannot express).
pub struct Broker {
    conn: Connection,
}

impl Broker {
    pub async fn connect(url: &str) -> anyhow::Result<Broker> {
        Ok(Broker {
            conn: Connection::connect(url, ConnectionProperties::default()).await?,
        })
    }

    pub async fn declare_exchange(&self, name: &str) -> anyhow::Result<()> {
        let ch = self.conn.create_channel().await?;
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    /// A queue that nacks publishes beyond `max` messages, bound with `#`.
    pub async fn limited_queue(&self, name: &str, exchange: &str, max: u32) -> anyhow::Result<()> {
        let ch = self.conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongUInt(max));
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
        ch.queue_bind(
            name.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    pub async fn depth(&self, queue: &str) -> anyhow::Result<u32> {
        let ch = self.conn.create_channel().await?;
        let q = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(q.message_count())
    }

    pub async fn delete_exchange(&self, name: &str) -> anyhow::Result<()> {
        let ch = self.conn.create_channel().await?;
        ch.exchange_delete(name.into(), ExchangeDeleteOptions::default())
            .await?;
        Ok(())
    }

    pub async fn delete_queue(&self, name: &str) -> anyhow::Result<()> {
        let ch = self.conn.create_channel().await?;
        ch.queue_delete(name.into(), QueueDeleteOptions::default())
            .await?;
        Ok(())
    }
}
