//! `aether serve`: the distributed roles, against PostgreSQL and Kafka.

use aether_cli::moderator::ModeratorConfig;
use aether_cli::roles::{
    moderator, projector, relay, start_distributed, DistributedConfig, EmbeddedConfig,
};
use aether_commands::relay::RelayConfig;
use aether_projections::stream::engine::{PoisonPolicy, ProjectorOptions};
use aether_projections::stream::role::Stores;
use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ops::{KafkaArgs, MongoArgs, PostgresArgs, ProducerArgs, WriterArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// GraphQL over HTTP and WebSocket: commands to PostgreSQL; queries from the projector
    /// processes' read models (PostgreSQL, and MongoDB via --mongo unless --timeline-store
    /// postgres); subscriptions catch up
    /// from those and go live from `aether.updates.v1`. Keeps no state: run as many as you
    /// like.
    Api,
    /// Publish the PostgreSQL outbox to Kafka (one active instance; others stand by).
    Relay,
    /// Keep one projection (`--projection NAME`) up to date from the Kafka log, in its own
    /// store; serves /metrics, /healthz and /readyz on --listen.
    Projector,
    /// The realtime edge: the same GraphQL over HTTP and WebSocket as `api`, deployed for
    /// subscribers (its subscriptions are fed by the projectors' updates on
    /// `aether.updates.v1`, every partition, from start-up, no consumer group); run as many as
    /// you like.
    Edge,
    /// The model stage of moderation: score every message sent or edited (the message
    /// events topic, from its own checkpoint in PostgreSQL) and flag and hide those at or
    /// above their server's threshold, as commands; serves /metrics, /healthz and /readyz
    /// (503 while the model is missing) on --listen. One instance.
    Moderator,
    /// The API and the relay in one process.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnPoison {
    Park,
    Halt,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The role this process plays; all of them by default.
    #[arg(long, value_enum, default_value_t = Role::All, env = "AETHER_ROLE")]
    role: Role,

    #[command(flatten)]
    postgres: PostgresArgs,

    #[command(flatten)]
    kafka: KafkaArgs,

    #[command(flatten)]
    producer: ProducerArgs,

    #[command(flatten)]
    writer: WriterArgs,

    #[command(flatten)]
    mongo: MongoArgs,

    /// The API's settings; the relay uses only --listen (for /healthz and /readyz).
    #[command(flatten)]
    api: crate::DevArgs,

    /// The token-signing keyring (`aether keys generate`) or secret (at least 32 random bytes),
    /// shared by every API and edge instance. Required: the distributed mode never generates or
    /// defaults one, and refuses a weak one.
    #[arg(long, env = "AETHER_JWT_SECRET_FILE")]
    jwt_secret_file: Option<std::path::PathBuf>,

    /// The projection a `projector` process keeps: catalog, receipts, audit, search
    /// (PostgreSQL) or timeline (MongoDB with --mongo, or PostgreSQL with --timeline-store
    /// postgres). Queries need catalog, receipts and timeline.
    #[arg(long, env = "AETHER_PROJECTION")]
    projection: Option<String>,

    /// What a projector does with an event that keeps failing: park it as a dead letter and go
    /// on, or halt.
    #[arg(long, value_enum, default_value_t = OnPoison::Park, env = "AETHER_ON_POISON")]
    on_poison: OnPoison,

    /// Attempts at a failing event before --on-poison applies.
    #[arg(long, default_value_t = 3, env = "AETHER_PROJECTOR_ATTEMPTS")]
    projector_attempts: i32,

    /// Answer GraphQL introspection (`__schema`, `__type`; what GraphiQL and code
    /// generators read). Off by default in the distributed mode: a production API does not
    /// describe itself to whoever asks.
    #[arg(long, env = "AETHER_INTROSPECTION")]
    introspection: bool,

    /// Outbox rows the relay publishes per round trip.
    #[arg(long, default_value_t = 1000, env = "AETHER_RELAY_BATCH")]
    relay_batch: i64,
}

impl ServeArgs {
    /// The process's name in traces: `aether-api`, `aether-relay`,
    /// `aether-projector-<projection>`, `aether-edge`, `aether-moderator` or `aether-all`.
    pub fn service_name(&self) -> String {
        let role = match self.role {
            Role::Api => "api",
            Role::Relay => "relay",
            Role::Projector => "projector",
            Role::Edge => "edge",
            Role::Moderator => "moderator",
            Role::All => "all",
        };
        aether_cli::tracing_otel::service_name(role, self.projection.as_deref())
    }
}

pub async fn serve(args: ServeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = args
        .postgres
        .connect()
        .await?
        .with_group_commit(args.writer.postgres_group_commit);
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let listen = args.api.listen;
    match args.role {
        Role::Api | Role::Edge | Role::All => {
            let Some(secret) = args.jwt_secret_file.clone() else {
                anyhow::bail!(
                    "--jwt-secret-file (AETHER_JWT_SECRET_FILE) is required: every API instance \
                     must sign tokens with the same secret; create one with \
                     `aether keys generate --file jwt-secret`"
                );
            };
            let mongo = args.mongo.timeline().await?;
            // Unlike `aether dev`, no origin is allowed unless named.
            let origins = args.api.cors_origins.clone().unwrap_or_default();
            let mut config = EmbeddedConfig {
                jwt_secret_file: Some(secret),
                ..args.api.into_config()
            };
            config.api.introspection = args.introspection;
            config.http.allowed_origins = origins;
            let running = start_distributed(
                config,
                DistributedConfig {
                    postgres: store,
                    kafka: args.producer.configure(args.kafka.config()),
                    mongo,
                    with_relay: args.role == Role::All,
                    relay_latency: None,
                },
            )
            .await?;
            let role = if args.role == Role::Edge {
                "edge"
            } else {
                "api"
            };
            println!(
                "aether {role}: GraphQL at http://{}/graphql",
                running.local_addr
            );
            let token = shutdown.clone();
            let stop = running.shutdown.clone();
            tokio::spawn(async move {
                token.cancelled().await;
                stop.cancel();
            });
            tasks.spawn(async move { running.wait().await.context("api failed") });
        }
        Role::Projector => {
            let Some(name) = args.projection.clone() else {
                anyhow::bail!(
                    "--projection NAME (AETHER_PROJECTION) is required with --role projector"
                );
            };
            let stores = Stores {
                postgres: store.pool().clone(),
                mongo: args.mongo.connect().await?,
                timeline: args.mongo.timeline_store,
            };
            let options = ProjectorOptions {
                batch_size: args.api.projector_batch.max(1),
                max_attempts: args.projector_attempts.max(1),
                poison: match args.on_poison {
                    OnPoison::Park => PoisonPolicy::Park,
                    OnPoison::Halt => PoisonPolicy::Halt,
                },
                ..ProjectorOptions::default()
            };
            let addr = projector::start_projector(
                stores,
                args.producer.configure(args.kafka.config()),
                &name,
                options,
                listen,
                &shutdown,
                &mut tasks,
            )
            .await?;
            println!("aether projector {name}: metrics at http://{addr}/metrics");
        }
        Role::Moderator => {
            let config = ModeratorConfig {
                max_attempts: args.projector_attempts.max(1),
                poison: match args.on_poison {
                    OnPoison::Park => PoisonPolicy::Park,
                    OnPoison::Halt => PoisonPolicy::Halt,
                },
                ..args.api.moderator_config(crate::ModeratorHome::OwnProcess)
            };
            let (addr, _) = moderator::start_moderator(
                store,
                args.producer.configure(args.kafka.config()),
                config,
                listen,
                &shutdown,
                &mut tasks,
            )
            .await?;
            println!("aether moderator: health at http://{addr}/readyz");
        }
        Role::Relay => {
            let config = RelayConfig {
                batch_size: args.relay_batch.max(1),
                ..RelayConfig::default()
            };
            let addr = relay::start_relay(
                store.pool().clone(),
                args.producer.configure(args.kafka.config()),
                config,
                listen,
                &shutdown,
                &mut tasks,
            )
            .await?;
            println!("aether relay: health at http://{addr}/readyz");
        }
    }
    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let result = joined.context("a role panicked").and_then(|result| result);
        if let Err(error) = result {
            shutdown.cancel();
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    fn introspection(args: &[&str]) -> Option<bool> {
        match crate::Cli::try_parse_from(args).ok()?.command {
            crate::Command::Serve(serve) => Some(serve.introspection),
            _ => None,
        }
    }

    #[test]
    fn introspection_is_off_unless_asked_for() {
        let serve = ["aether", "serve", "--postgres", "postgres://db/aether"];
        assert_eq!(introspection(&serve), Some(false));
        assert_eq!(
            introspection(&[&serve[..], &["--introspection"]].concat()),
            Some(true)
        );
    }
}
