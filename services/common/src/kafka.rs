//! What api and worker share about Kafka: the task event on the wire, the
//! topic's creation, and the broker readiness probe.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::health::Check;
use crate::settings::{positive, Env, SettingsError};

/// Where the task events go, read from the environment by api and worker.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `KAFKA_BROKERS` (default `localhost:9092`): comma-separated host:port.
    pub brokers: String,
    /// `KAFKA_TOPIC` (default `image-tasks`).
    pub topic: String,
    /// `KAFKA_TOPIC_PARTITIONS` (default 3): used by whichever service
    /// creates the topic first.
    pub partitions: i32,
}

impl KafkaSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            brokers: env.checked(
                "KAFKA_BROKERS",
                "localhost:9092".to_string(),
                |b: &String| broker_list(b),
            )?,
            topic: env.or("KAFKA_TOPIC", "image-tasks".to_string())?,
            partitions: env.checked("KAFKA_TOPIC_PARTITIONS", 3, positive)?,
        })
    }

    /// Creates the topic unless it exists.
    pub async fn ensure_topic(&self, timeout: Duration) -> Result<(), TopicError> {
        ensure_topic(&self.brokers, &self.topic, self.partitions, timeout).await
    }
}

/// A broker list as librdkafka's `bootstrap.servers` reads it: `host` or
/// `host:port` (IPv6 in brackets), optionally behind a security protocol
/// (`PLAINTEXT://`), comma-separated. Anything else (a URL such as
/// `http://kafka:9092`, an empty entry, a bad port) is refused at start:
/// librdkafka would take it and retry forever, and the service would run
/// with a broker that never answers.
fn broker_list(brokers: &str) -> Result<(), String> {
    const PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
    let expected = "expected comma-separated host:port, such as kafka:9092,kafka-2:9092";
    for entry in brokers.split(',').map(str::trim) {
        let address = match entry.split_once("://") {
            Some((protocol, rest))
                if PROTOCOLS.contains(&protocol.to_ascii_lowercase().as_str()) =>
            {
                rest
            }
            Some((protocol, _)) => {
                return Err(format!(
                    "{protocol}:// is not a Kafka security protocol; {expected}"
                ))
            }
            None => entry,
        };
        let (host, port) = match address.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((host, "")) => (host, None),
                Some((host, port)) => (host, Some(port.strip_prefix(':').unwrap_or(port))),
                None => ("", None),
            },
            None => match address.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (address, None),
            },
        };
        let host_ok = !host.is_empty()
            && !host.contains(|c: char| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'));
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
        if !host_ok || !port_ok {
            return Err(format!("{entry:?} is not host:port; {expected}"));
        }
    }
    Ok(())
}

/// The event published to `image-tasks` for every new task, keyed by task id.
/// The image itself stays in the task store; the event only points at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCreated {
    pub task_id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    pub content_type: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A client configuration for `brokers` with the settings every PixelFlow
/// client wants.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Without this librdkafka logs every failed reconnect to stderr, in
        // its own format; failures reach our JSON logs through results.
        .set("log_level", "3");
    config
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    // The cause is in the message, not chained as `source` too: `{:#}`
    // would print it twice.
    #[error("cannot create a Kafka admin client for {brokers}: {error}")]
    Client { brokers: String, error: KafkaError },
    #[error("cannot create topic {topic} on {brokers}: {reason}")]
    Create {
        topic: String,
        brokers: String,
        reason: String,
    },
}

/// Creates `topic` with `partitions` partitions unless it exists already.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(brokers)
            .create()
            .map_err(|error| TopicError::Client {
                brokers: brokers.into(),
                error,
            })?;
    let create_error = |reason: String| TopicError::Create {
        topic: topic.into(),
        brokers: brokers.into(),
        reason,
    };
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| create_error(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(create_error(code.to_string())),
        }
    }
    Ok(())
}

/// The readiness probe for the broker: one client, made at start-up and
/// reused by every `/ready`, rather than a new client (threads, connections)
/// per healthcheck.
#[derive(Clone)]
pub struct BrokerProbe {
    client: std::sync::Arc<rdkafka::consumer::BaseConsumer>,
}

impl BrokerProbe {
    pub fn new(brokers: &str) -> rdkafka::error::KafkaResult<Self> {
        Ok(Self {
            client: std::sync::Arc::new(client_config(brokers).create()?),
        })
    }

    /// The `/ready` check: a broker answers a metadata request in time.
    pub async fn check(&self, timeout: Duration) -> Check {
        let client = self.client.clone();
        // fetch_metadata blocks its thread; keep it off the async workers.
        let probe = async move {
            tokio::task::spawn_blocking(move || {
                client
                    .fetch_metadata(None, timeout)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        };
        Check::run("kafka", timeout, probe).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_list_that_librdkafka_would_retry_forever_is_refused_by_name() {
        for good in [
            "localhost:9092",
            "kafka",
            "kafka:9092, kafka-2:9093",
            "PLAINTEXT://kafka:9092",
            "[::1]:9092",
            "10.0.0.7:19092",
        ] {
            let env = Env::pairs(&[("KAFKA_BROKERS", good)]);
            let settings = KafkaSettings::from_env(&env).expect(good);
            assert_eq!(settings.brokers, good);
        }
        // (An empty value is unset, as for every setting: the default.)
        for bad in [
            "http://kafka:9092",
            "kafka:notaport",
            "kafka:0",
            "kafka:9092,",
            "kafka:9092/",
            "kafka 9092",
            "[::1",
        ] {
            let env = Env::pairs(&[("KAFKA_BROKERS", bad)]);
            let err = KafkaSettings::from_env(&env).expect_err(bad);
            assert!(err.to_string().contains("KAFKA_BROKERS"), "{bad}: {err}");
        }
    }
}
