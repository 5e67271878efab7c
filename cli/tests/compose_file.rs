//! Structure checks for `docker-compose.yml` and `infra/Dockerfile`.
//!
//! No Docker engine runs where the tests run, so `docker compose up` cannot prove the file works.
//! These tests check instead what would make it fail, or quietly misbehave, for someone who runs
//! it: a missing service, a dependency that does not wait, a server without a healthcheck, a
//! broker that needs ZooKeeper, a secret written into the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

/// Services the distributed shape needs (the API instances are checked separately).
const REQUIRED: [&str; 9] = [
    "kafka",
    "postgres",
    "mongo",
    "jaeger",
    "migrate",
    "kafka-init",
    "relay",
    "prometheus",
    "grafana",
];

const DOCKERFILE: &str = "infra/Dockerfile";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent folder")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn has_merge_key(value: &Value) -> bool {
    match value {
        Value::Mapping(mapping) => mapping
            .iter()
            .any(|(k, v)| k.as_str() == Some("<<") || has_merge_key(v)),
        Value::Sequence(sequence) => sequence.iter().any(has_merge_key),
        _ => false,
    }
}

/// The compose file as Docker Compose sees it: anchors resolved and `<<` merge keys applied
/// (repeatedly, since a merged mapping can itself carry a merge key).
fn compose() -> Value {
    let mut value: Value =
        serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML");
    for _ in 0..8 {
        if !has_merge_key(&value) {
            return value;
        }
        value.apply_merge().expect("merge keys are mappings");
    }
    panic!("docker-compose.yml: merge keys (`<<`) nest deeper than 8 levels");
}

fn services(compose: &Value) -> &Mapping {
    compose
        .get("services")
        .and_then(Value::as_mapping)
        .expect("docker-compose.yml has a `services` mapping")
}

fn service_names(compose: &Value) -> Vec<String> {
    services(compose)
        .keys()
        .map(|k| k.as_str().expect("service names are strings").to_owned())
        .collect()
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    services(compose)
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

/// A scalar as compose passes it to a container: strings, numbers and booleans alike.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `environment`, in either the mapping or the `KEY=value` list form.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(mapping)) => mapping
            .iter()
            .map(|(k, v)| {
                let key = k
                    .as_str()
                    .expect("environment names are strings")
                    .to_owned();
                (key, scalar(v).unwrap_or_default())
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let item = item.as_str().expect("environment entries are strings");
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("`environment` is neither a mapping nor a list: {other:?}"),
    }
}

/// One-shot jobs (`restart: "no"`) run to completion; everything else is a long-running server.
fn is_one_shot(service: &Value) -> bool {
    service.get("restart").and_then(Value::as_str) == Some("no")
}

/// Services built from this repository, i.e. AetherConnect's own roles.
fn aether_services(compose: &Value) -> Vec<String> {
    service_names(compose)
        .into_iter()
        .filter(|name| service(compose, name).get("build").is_some())
        .collect()
}

fn api_services(compose: &Value) -> Vec<String> {
    service_names(compose)
        .into_iter()
        .filter(|name| name == "api" || name.starts_with("api-"))
        .collect()
}

fn command(service: &Value) -> Vec<String> {
    match service.get("command") {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(Value::String(line)) => line.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// (published port on the host, port in the container) for each entry of `ports`.
fn ports(service: &Value) -> Vec<(Option<u16>, u16)> {
    let Some(items) = service.get("ports").and_then(Value::as_sequence) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            Value::Mapping(long) => {
                let port = |key: &str| {
                    long.get(key)
                        .and_then(scalar)
                        .map(|p| p.parse::<u16>().expect("a port number"))
                };
                (
                    port("published"),
                    port("target").expect("a long-form port has a target"),
                )
            }
            short => {
                let short = scalar(short).expect("a port entry is a string or a number");
                let short = short.split('/').next().unwrap_or_default();
                let parts: Vec<&str> = short.rsplitn(3, ':').collect();
                let parse = |p: &str| {
                    p.parse::<u16>()
                        .unwrap_or_else(|_| panic!("`{short}`: `{p}` is not a single port"))
                };
                match parts.as_slice() {
                    [target] => (None, parse(target)),
                    [target, published, ..] => (Some(parse(published)), parse(target)),
                    [] => unreachable!("rsplitn yields at least one part"),
                }
            }
        })
        .collect()
}

fn healthcheck_enabled(service: &Value) -> bool {
    let Some(check) = service.get("healthcheck") else {
        return false;
    };
    let disabled = check.get("disable").and_then(Value::as_bool) == Some(true);
    let test = match check.get("test") {
        Some(Value::Sequence(items)) => !items.is_empty() && items[0].as_str() != Some("NONE"),
        Some(Value::String(line)) => !line.trim().is_empty(),
        _ => false,
    };
    !disabled && test
}

/// The `host` of a `host:port` address.
fn host_of(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(host, _)| host)
}

/// The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined and comments
/// dropped, the way Docker reads them.
fn dockerfile_instructions() -> Vec<(String, String)> {
    let text = read(DOCKERFILE);
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((current.trim(), ""));
        instructions.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    assert!(
        current.trim().is_empty(),
        "{DOCKERFILE} ends in a continuation line"
    );
    instructions
}

/// The stages of the Dockerfile: (FROM arguments, the instructions of that stage).
fn dockerfile_stages() -> Vec<(String, Vec<(String, String)>)> {
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (keyword, rest) in dockerfile_instructions() {
        if keyword == "FROM" {
            stages.push((rest, Vec::new()));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push((keyword, rest));
        }
    }
    stages
}

/// The image of a FROM line, without `--platform=…` and `AS name`.
fn from_image(from: &str) -> &str {
    from.split_whitespace()
        .find(|word| !word.starts_with("--"))
        .expect("FROM names an image")
}

#[test]
fn the_services_of_the_distributed_shape_exist() {
    // `docker compose up` must start everything the distributed mode needs, in one command.
    let compose = compose();
    let names = service_names(&compose);
    for required in REQUIRED {
        assert!(
            names.iter().any(|n| n == required),
            "docker-compose.yml lacks the `{required}` service; it has {names:?}"
        );
    }
    // More than one API instance, so the file exercises what production relies on: any instance
    // can serve any client (shared secret, no instance-local state).
    let apis = api_services(&compose);
    let replicas: u64 = apis
        .iter()
        .map(|name| {
            service(&compose, name)
                .get("deploy")
                .and_then(|d| d.get("replicas"))
                .and_then(Value::as_u64)
                .unwrap_or(1)
        })
        .sum();
    assert!(
        replicas >= 2,
        "the API should run at least two instances (services `api-N` or deploy.replicas); \
         found {apis:?} with {replicas} in all"
    );
}

#[test]
fn every_service_has_a_pinned_image_or_builds_infra_dockerfile() {
    // A service with neither cannot start; `latest` or no tag changes under people's feet; a
    // build that points elsewhere builds something other than the AetherConnect image.
    let compose = compose();
    for name in service_names(&compose) {
        let service = service(&compose, &name);
        match (service.get("image"), service.get("build")) {
            (None, None) => panic!("service `{name}` has neither `image` nor `build`"),
            (_, Some(build)) => {
                let context = build
                    .get("context")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| {
                        panic!("service `{name}`: `build` needs `context` and `dockerfile`")
                    });
                let dockerfile = build.get("dockerfile").and_then(Value::as_str);
                assert_eq!(
                    context, ".",
                    "service `{name}`: the build context must be the workspace root"
                );
                assert_eq!(
                    dockerfile,
                    Some(DOCKERFILE),
                    "service `{name}` must build {DOCKERFILE}"
                );
                assert!(
                    repo_root().join(context).join(DOCKERFILE).is_file(),
                    "{DOCKERFILE} does not exist"
                );
            }
            (Some(image), None) => {
                let image = image.as_str().expect("`image` is a string");
                let tag = image
                    .rsplit_once(':')
                    .filter(|(_, tag)| !tag.contains('/'))
                    .map(|(_, tag)| tag);
                assert!(
                    matches!(tag, Some(tag) if tag != "latest"),
                    "service `{name}`: pin the image `{image}` to a version tag"
                );
            }
        }
    }
}

#[test]
fn the_dockerfile_is_multi_stage_and_runs_aether() {
    // Multi-stage keeps the compiler out of the image people deploy; the builder and the runtime
    // share a Debian release so the binary finds the glibc it was linked against.
    let stages = dockerfile_stages();
    assert!(
        stages.len() >= 2,
        "{DOCKERFILE} should have a build stage and a runtime stage, has {} FROM",
        stages.len()
    );
    let (first_from, _) = &stages[0];
    let builder = from_image(first_from);
    assert!(
        builder.starts_with("rust:") && builder.ends_with("-bookworm"),
        "the first stage should build on an official rust:<version>-bookworm image, not `{builder}`"
    );
    let (runtime_from, runtime) = stages.last().expect("at least one stage");
    let runtime_image = from_image(runtime_from);
    assert_eq!(
        runtime_image, "debian:bookworm-slim",
        "the runtime stage should be debian:bookworm-slim"
    );

    let all: Vec<&(String, String)> = stages.iter().flat_map(|(_, body)| body).collect();
    assert!(
        all.iter().any(|(k, rest)| k == "RUN"
            && rest.contains("cargo build --release")
            && rest.contains("--locked")
            && rest.contains("--bin aether")),
        "{DOCKERFILE} should build the `aether` binary in release mode from the committed Cargo.lock"
    );

    let find = |keyword: &str| {
        runtime
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.as_str())
            .collect::<Vec<_>>()
    };
    let entrypoint = find("ENTRYPOINT");
    assert!(
        entrypoint.last().is_some_and(|e| e.contains("aether")),
        "the runtime stage should have ENTRYPOINT [\"aether\"] so compose commands are subcommands; \
         found {entrypoint:?}"
    );
    assert!(
        find("COPY")
            .iter()
            .any(|c| c.contains("--from=") && c.contains("/usr/local/bin/aether")),
        "the runtime stage should copy the built binary to /usr/local/bin/aether"
    );
    let user = find("USER");
    assert!(
        user.last().is_some_and(|u| {
            let name = u.split(':').next().unwrap_or_default();
            name != "root" && name != "0"
        }),
        "the runtime stage should drop root with USER; found {user:?}"
    );
    assert!(
        !find("HEALTHCHECK").is_empty(),
        "the runtime stage should have a HEALTHCHECK (on /healthz)"
    );
}

#[test]
fn the_build_context_leaves_out_build_output_and_secrets() {
    // Sending target/ (gigabytes) to the Docker daemon makes every build crawl; the JWT secret
    // must never be baked into an image layer.
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches('/')
                .trim_end_matches('/')
                .to_owned()
        })
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target", "data", ".tools", ".venv*", "infra/secrets"] {
        assert!(
            ignored.iter().any(|l| l == needed),
            ".dockerignore should exclude `{needed}`; it has {ignored:?}"
        );
    }
}

#[test]
fn kafka_runs_in_kraft_mode_without_zookeeper() {
    // Kafka 4 has no ZooKeeper at all; the compose file must not depend on it.
    let compose = compose();
    for name in service_names(&compose) {
        let service = service(&compose, &name);
        let image = service.get("image").and_then(Value::as_str).unwrap_or("");
        assert!(
            !name.to_lowercase().contains("zookeeper") && !image.contains("zookeeper"),
            "service `{name}` runs ZooKeeper; Kafka should run in KRaft mode"
        );
        for key in environment(service).keys() {
            assert!(
                !key.to_uppercase().contains("ZOOKEEPER"),
                "service `{name}` sets {key}; KRaft needs no ZooKeeper setting"
            );
        }
    }

    let kafka = service(&compose, "kafka");
    let env = environment(kafka);
    let roles = env
        .get("KAFKA_PROCESS_ROLES")
        .expect("kafka sets KAFKA_PROCESS_ROLES (KRaft)");
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "the single Kafka node must be both broker and controller, has `{roles}`"
    );
    let node_id = env.get("KAFKA_NODE_ID").expect("kafka sets KAFKA_NODE_ID");
    let voters = env
        .get("KAFKA_CONTROLLER_QUORUM_VOTERS")
        .expect("kafka sets KAFKA_CONTROLLER_QUORUM_VOTERS");
    assert!(
        voters.starts_with(&format!("{node_id}@kafka:")),
        "the controller quorum `{voters}` should be this node ({node_id}) at the `kafka` host"
    );
    assert_eq!(
        env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")
            .map(String::as_str),
        Some("false"),
        "topics come from `aether kafka init`, not from whichever client names one first"
    );
    assert_eq!(
        env.get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR")
            .map(String::as_str),
        Some("1"),
        "with one broker, consumer groups only work if the offsets topic has one replica"
    );
    let advertised = env
        .get("KAFKA_ADVERTISED_LISTENERS")
        .expect("kafka sets KAFKA_ADVERTISED_LISTENERS");
    assert!(
        advertised.contains("//kafka:"),
        "Kafka must advertise its compose name (`kafka`), or clients in other containers \
         cannot follow the metadata; advertises `{advertised}`"
    );
}

#[test]
fn every_long_running_service_has_a_healthcheck_and_a_restart_policy() {
    // `depends_on: service_healthy` and `docker compose ps` are only as good as the checks; a
    // server that crashes should come back; a one-shot job must not be restarted in a loop.
    let compose = compose();
    for name in service_names(&compose) {
        let service = service(&compose, &name);
        if is_one_shot(service) {
            continue;
        }
        assert!(
            healthcheck_enabled(service),
            "long-running service `{name}` has no healthcheck"
        );
        let restart = service.get("restart").and_then(Value::as_str);
        assert!(
            matches!(restart, Some("unless-stopped" | "always" | "on-failure")),
            "long-running service `{name}` should restart after a crash; has {restart:?}"
        );
    }
    for one_shot in ["migrate", "kafka-init"] {
        assert!(
            is_one_shot(service(&compose, one_shot)),
            "`{one_shot}` runs once and exits; it needs restart: \"no\""
        );
    }
}

#[test]
fn dependencies_exist_and_wait_for_a_condition() {
    // A plain `depends_on: [x]` waits only for x's container to start, not for x to be usable;
    // a misspelt target makes compose refuse the whole file.
    let compose = compose();
    let names = service_names(&compose);
    for name in &names {
        let Some(depends_on) = service(&compose, name).get("depends_on") else {
            continue;
        };
        let depends_on = depends_on.as_mapping().unwrap_or_else(|| {
            panic!("service `{name}`: use the long form of depends_on, with a condition")
        });
        for (target, spec) in depends_on {
            let target = target.as_str().expect("dependency names are strings");
            assert!(
                names.iter().any(|n| n == target),
                "service `{name}` depends on `{target}`, which does not exist"
            );
            let condition = spec.get("condition").and_then(Value::as_str);
            let target_service = service(&compose, target);
            match condition {
                Some("service_healthy") => assert!(
                    healthcheck_enabled(target_service),
                    "`{name}` waits for `{target}` to be healthy, but `{target}` has no healthcheck"
                ),
                Some("service_completed_successfully") => assert!(
                    is_one_shot(target_service),
                    "`{name}` waits for `{target}` to complete, but `{target}` is not a one-shot job"
                ),
                Some("service_started") => {}
                other => panic!("`{name}` -> `{target}`: no valid condition ({other:?})"),
            }
        }
    }

    let condition = |name: &str, target: &str| {
        service(&compose, name)
            .get("depends_on")
            .and_then(|d| d.get(target))
            .and_then(|d| d.get("condition"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    assert_eq!(
        condition("migrate", "postgres").as_deref(),
        Some("service_healthy")
    );
    assert_eq!(
        condition("kafka-init", "kafka").as_deref(),
        Some("service_healthy")
    );
    for name in aether_services(&compose) {
        if is_one_shot(service(&compose, &name)) {
            continue;
        }
        // Servers start on a migrated schema and existing topics, or they fail their first request.
        for (target, wanted) in [
            ("migrate", "service_completed_successfully"),
            ("kafka-init", "service_completed_successfully"),
            ("postgres", "service_healthy"),
            ("kafka", "service_healthy"),
        ] {
            assert_eq!(
                condition(&name, target).as_deref(),
                Some(wanted),
                "`{name}` should wait for `{target}` ({wanted})"
            );
        }
    }
}

#[test]
fn the_api_publishes_port_8080() {
    // The README and every example talk to http://localhost:8080/graphql.
    let compose = compose();
    let published = api_services(&compose).into_iter().find_map(|name| {
        let service = service(&compose, &name);
        let (_, target) = ports(service)
            .into_iter()
            .find(|(published, _)| *published == Some(8080))?;
        Some((name, environment(service), target))
    });
    let (name, env, target) = published.expect("an API service publishes host port 8080");
    let listen = env
        .get("AETHER_LISTEN")
        .unwrap_or_else(|| panic!("`{name}` sets AETHER_LISTEN"));
    assert!(
        listen.starts_with("0.0.0.0:") || listen.starts_with("[::]:"),
        "`{name}` must listen on every interface inside its container, not `{listen}`"
    );
    assert_eq!(
        listen.rsplit_once(':').map(|(_, port)| port),
        Some(target.to_string().as_str()),
        "`{name}` publishes container port {target} but listens on `{listen}`"
    );
}

#[test]
fn aether_services_get_their_connection_settings() {
    // Each role reads its servers from the environment; a missing or wrong address is a crash
    // loop at start.
    let compose = compose();
    let kafka_env = environment(service(&compose, "kafka"));
    let advertised = kafka_env
        .get("KAFKA_ADVERTISED_LISTENERS")
        .cloned()
        .unwrap_or_default();
    let pg_env = environment(service(&compose, "postgres"));

    let aether = aether_services(&compose);
    assert!(!aether.is_empty(), "no service builds {DOCKERFILE}");
    for name in &aether {
        let service = service(&compose, name);
        let env = environment(service);
        let args = command(service);
        let needs_postgres =
            !is_one_shot(service) || args.first().map(String::as_str) == Some("migrate");
        let needs_kafka =
            !is_one_shot(service) || args.first().map(String::as_str) == Some("kafka");
        assert!(
            needs_postgres || needs_kafka,
            "`{name}` runs {args:?}, which this test does not know"
        );
        assert_eq!(
            env.get("AETHER_LOG_FORMAT").map(String::as_str),
            Some("json"),
            "`{name}` should log JSON for log collectors"
        );

        if needs_postgres {
            let url = env
                .get("AETHER_POSTGRES_URL")
                .unwrap_or_else(|| panic!("`{name}` needs AETHER_POSTGRES_URL"));
            let rest = url
                .strip_prefix("postgres://")
                .or_else(|| url.strip_prefix("postgresql://"))
                .unwrap_or_else(|| panic!("`{name}`: `{url}` is not a postgres:// URL"));
            let (credentials, location) = rest.split_once('@').unwrap_or(("", rest));
            let (host_port, database) = location.split_once('/').unwrap_or((location, ""));
            let user = credentials.split(':').next().unwrap_or_default();
            assert_eq!(
                host_of(host_port),
                "postgres",
                "`{name}` should reach PostgreSQL by its service name"
            );
            assert_eq!(
                Some(user),
                pg_env.get("POSTGRES_USER").map(String::as_str),
                "`{name}` connects as a user the postgres service does not create"
            );
            assert_eq!(
                Some(database.split('?').next().unwrap_or_default()),
                pg_env.get("POSTGRES_DB").map(String::as_str),
                "`{name}` connects to a database the postgres service does not create"
            );
        }
        if needs_kafka {
            let bootstrap = env
                .get("AETHER_KAFKA_BOOTSTRAP")
                .unwrap_or_else(|| panic!("`{name}` needs AETHER_KAFKA_BOOTSTRAP"));
            for address in bootstrap.split(',') {
                assert!(
                    advertised.contains(&format!("//{}", address.trim())),
                    "`{name}` bootstraps from `{address}`, which Kafka does not advertise \
                     (`{advertised}`)"
                );
            }
        }
        // API and edge instances read the timeline from MongoDB, as its projector writes it.
        let role = args
            .windows(2)
            .find(|w| w[0] == "--role")
            .map(|w| w[1].as_str());
        let needs_mongo = matches!(role, Some("api" | "edge" | "all"))
            || args
                .windows(2)
                .any(|w| w[0] == "--projection" && w[1] == "timeline");
        if needs_mongo {
            let url = env
                .get("AETHER_MONGO_URL")
                .unwrap_or_else(|| panic!("`{name}` needs AETHER_MONGO_URL"));
            let location = url
                .strip_prefix("mongodb://")
                .unwrap_or_else(|| panic!("`{name}`: `{url}` is not a mongodb:// URL"));
            let host_port = location.split(['/', '?']).next().unwrap_or_default();
            assert_eq!(
                host_of(host_port),
                "mongo",
                "`{name}` should reach MongoDB by its service name"
            );
            assert!(
                service["depends_on"].get("mongo").is_some(),
                "`{name}` reads MongoDB, so it should wait for it"
            );
        }
        if !is_one_shot(service) {
            assert_eq!(
                args.first().map(String::as_str),
                Some("serve"),
                "`{name}` should run `aether serve --role …`"
            );
            assert!(
                args.windows(2).any(|w| w[0] == "--role"),
                "`{name}` should pick its role with --role"
            );
        }
    }
}

#[test]
fn the_jwt_secret_comes_from_a_compose_secret() {
    // A secret written into docker-compose.yml ends up in git, in `docker inspect` and in every
    // copy of the file; it must arrive as a file under /run/secrets instead.
    let compose = compose();
    let declared = compose.get("secrets").and_then(Value::as_mapping);
    for name in service_names(&compose) {
        let service = service(&compose, &name);
        let env = environment(service);
        for (key, value) in &env {
            let upper = key.to_uppercase();
            let secret_like = ["SECRET", "PRIVATE_KEY", "API_KEY"]
                .iter()
                .any(|word| upper.contains(word));
            if secret_like {
                assert!(
                    upper.ends_with("_FILE") && value.starts_with("/run/secrets/"),
                    "service `{name}` sets {key} inline; pass it as a compose secret file \
                     (a *_FILE variable pointing under /run/secrets/)"
                );
            }
        }
        let listed: Vec<String> = service
            .get("secrets")
            .and_then(Value::as_sequence)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|s| {
                        s.as_str()
                            .or_else(|| s.get("source").and_then(Value::as_str))
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for secret in &listed {
            assert!(
                declared.is_some_and(|d| d.get(secret.as_str()).is_some()),
                "service `{name}` uses secret `{secret}`, which the top-level `secrets` lacks"
            );
        }
        for (key, value) in &env {
            if let Some(secret) = value.strip_prefix("/run/secrets/") {
                assert!(
                    listed.iter().any(|s| s == secret),
                    "service `{name}`: {key} reads /run/secrets/{secret}, but the service does \
                     not list the secret `{secret}`"
                );
            }
        }
    }

    for name in api_services(&compose) {
        let env = environment(service(&compose, &name));
        let path = env
            .get("AETHER_JWT_SECRET_FILE")
            .unwrap_or_else(|| panic!("`{name}` signs tokens and needs AETHER_JWT_SECRET_FILE"));
        let secret = path
            .strip_prefix("/run/secrets/")
            .expect("the JWT secret file is a compose secret");
        let file = declared
            .and_then(|d| d.get(secret))
            .and_then(|s| s.get("file"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("secret `{secret}` should come from a `file:`"));
        assert!(
            file.trim_start_matches("./").starts_with("infra/secrets/"),
            "secret `{secret}` should live under infra/secrets/ (git-ignored), not `{file}`"
        );
    }
    assert!(
        read(".gitignore")
            .lines()
            .any(|l| l.trim().trim_start_matches('/').trim_end_matches('/') == "infra/secrets"),
        ".gitignore should keep infra/secrets/ out of git"
    );
}

#[test]
fn jaeger_accepts_otlp_and_the_roles_send_it_there() {
    // Without OTLP the roles' spans go nowhere and the Jaeger UI stays empty.
    let compose = compose();
    let jaeger = service(&compose, "jaeger");
    assert_eq!(
        environment(jaeger)
            .get("COLLECTOR_OTLP_ENABLED")
            .map(String::as_str),
        Some("true"),
        "Jaeger must accept OTLP"
    );
    let published: Vec<u16> = ports(jaeger).into_iter().filter_map(|(p, _)| p).collect();
    for port in [16686, 4317, 4318] {
        assert!(
            published.contains(&port),
            "Jaeger should publish {port} (UI 16686, OTLP 4317/4318); publishes {published:?}"
        );
    }
    for name in aether_services(&compose) {
        let env = environment(service(&compose, &name));
        assert_eq!(
            env.get("OTEL_EXPORTER_OTLP_ENDPOINT").map(String::as_str),
            Some("http://jaeger:4318"),
            "`{name}` should export traces to Jaeger over OTLP/HTTP (the exporter speaks \
             HTTP with protobuf, not gRPC)"
        );
    }
}

/// The `host:container` bind mounts of a service whose host side is a path in this repository.
fn repository_mounts(service: &Value) -> Vec<(String, String)> {
    service
        .get("volumes")
        .and_then(Value::as_sequence)
        .map(|volumes| {
            volumes
                .iter()
                .filter_map(Value::as_str)
                .filter(|volume| volume.starts_with("./"))
                .filter_map(|volume| {
                    let mut parts = volume.split(':');
                    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn prometheus_scrapes_every_role_and_grafana_is_provisioned_from_infra_observability() {
    // A scrape target missing from the file is a role nobody watches; a mount of a path that
    // does not exist makes Docker create an empty folder in its place, and the dashboards or
    // the alert rules silently go missing.
    let compose = compose();
    for name in ["prometheus", "grafana"] {
        let mounts = repository_mounts(service(&compose, name));
        assert!(
            !mounts.is_empty(),
            "`{name}` should be provisioned from infra/observability/"
        );
        for (host, _) in &mounts {
            assert!(
                host.starts_with("./infra/observability/"),
                "`{name}` mounts {host}, outside infra/observability/"
            );
            assert!(
                repo_root().join(host).exists(),
                "`{name}` mounts {host}, which does not exist"
            );
        }
    }
    let mounted = |name: &str, container: &str| {
        repository_mounts(service(&compose, name))
            .into_iter()
            .find(|(_, inside)| inside == container)
            .map(|(host, _)| host)
    };
    let config = mounted("prometheus", "/etc/prometheus/prometheus.yml")
        .expect("prometheus mounts its configuration at /etc/prometheus/prometheus.yml");
    assert!(
        mounted("prometheus", "/etc/prometheus/rules").is_some(),
        "prometheus mounts the alert rules at /etc/prometheus/rules"
    );
    let config: Value =
        serde_norway::from_str(&read(&config)).expect("the Prometheus configuration is YAML");
    let targets: Vec<String> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|group| group["targets"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|target| target.as_str().map(str::to_owned))
        .collect();
    for name in aether_services(&compose) {
        let role = service(&compose, &name);
        if is_one_shot(role) {
            continue;
        }
        let listen = environment(role)
            .get("AETHER_LISTEN")
            .cloned()
            .unwrap_or_else(|| panic!("`{name}` has no AETHER_LISTEN"));
        let port = listen.rsplit(':').next().unwrap_or_default();
        let target = format!("{name}:{port}");
        assert!(
            targets.contains(&target),
            "Prometheus does not scrape `{name}` at {target}; it scrapes {targets:?}"
        );
    }
    for (container, provisioned) in [
        ("/etc/grafana/provisioning", "datasources"),
        ("/etc/grafana/provisioning", "dashboards"),
    ] {
        let host = mounted("grafana", container)
            .unwrap_or_else(|| panic!("grafana mounts its provisioning at {container}"));
        let dir = repo_root().join(host).join(provisioned);
        assert!(
            std::fs::read_dir(&dir).is_ok_and(|mut files| files.next().is_some()),
            "nothing is provisioned in {}",
            dir.display()
        );
    }
}
