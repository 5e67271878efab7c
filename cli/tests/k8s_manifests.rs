//! Structure checks for the Kubernetes manifests (infra/k8s): both overlays render with
//! `kubectl kustomize`, and what they render would run every role the way `aether serve` expects
//! (image, arguments, probes on the port the role listens on, configuration and secrets, scaling
//! and disruption rules). No cluster runs where the tests run, so this is what can be checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use aether_projections::stream::role::STREAM_PROJECTIONS;
use serde::Deserialize;
use serde_norway::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent folder")
        .to_path_buf()
}

/// Every object `kubectl kustomize` renders for `overlay`, by kind and name; `None` when no
/// kubectl is installed (scripts/test.sh says so; these machines have it).
fn render(overlay: &str) -> Option<BTreeMap<(String, String), Value>> {
    let dir = repo_root().join("infra/k8s/overlays").join(overlay);
    let output = match Command::new("kubectl").arg("kustomize").arg(&dir).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: no kubectl on PATH to render {}", dir.display());
            return None;
        }
        Err(error) => panic!("running kubectl: {error}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kustomize renders UTF-8");
    let mut objects = BTreeMap::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let object = Value::deserialize(document).expect("kustomize renders YAML");
        let kind = str_at(&object, &["kind"]).to_owned();
        let name = str_at(&object, &["metadata", "name"]).to_owned();
        assert!(
            objects
                .insert((kind.clone(), name.clone()), object)
                .is_none(),
            "{kind} {name} rendered twice"
        );
    }
    Some(objects)
}

fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |value, key| &value[*key])
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("no string at {path:?} in {value:?}"))
}

fn kind<'a>(
    objects: &'a BTreeMap<(String, String), Value>,
    kind: &str,
) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
    let kind = kind.to_owned();
    objects
        .iter()
        .filter(move |((k, _), _)| *k == kind)
        .map(|((_, name), object)| (name.as_str(), object))
}

fn get<'a>(objects: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    objects
        .get(&(kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The one container of a Deployment's or Job's pod.
fn container(workload: &Value) -> &Value {
    let containers = at(workload, &["spec", "template", "spec", "containers"])
        .as_sequence()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|arg| arg.as_str().expect("string args"))
        .collect()
}

/// A container's plain environment variables (not those from secrets or fields).
fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|var| var["name"].as_str() == Some(name))
}

/// The roles and the arguments each Deployment must run with.
fn expected_roles() -> Vec<(String, Vec<String>)> {
    let mut roles: Vec<(String, Vec<String>)> = ["relay", "api", "edge"]
        .iter()
        .map(|role| {
            (
                format!("aether-{role}"),
                vec!["serve".into(), "--role".into(), (*role).into()],
            )
        })
        .collect();
    for (projection, _) in STREAM_PROJECTIONS {
        roles.push((
            format!("aether-projector-{projection}"),
            vec![
                "serve".into(),
                "--role".into(),
                "projector".into(),
                "--projection".into(),
                (*projection).into(),
            ],
        ));
    }
    roles
}

fn check_overlay(overlay: &str, objects: &BTreeMap<(String, String), Value>) {
    let config_maps: Vec<&str> = kind(objects, "ConfigMap").map(|(name, _)| name).collect();
    assert!(
        kind(objects, "Secret").next().is_none(),
        "{overlay}: no Secret is rendered; they are created in the cluster, never committed"
    );
    let mut images = Vec::new();
    let mut workloads: Vec<(&str, &Value)> = kind(objects, "Deployment").collect();
    workloads.extend(kind(objects, "Job"));
    for (name, workload) in &workloads {
        let pod = at(workload, &["spec", "template", "spec"]);
        let container = container(workload);
        images.push(str_at(container, &["image"]).to_owned());
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{overlay}: {name} runs as the image's non-root user"
        );
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{overlay}: {name}: no role writes a file"
        );
        assert!(
            container["resources"]["requests"]["cpu"].as_str().is_some()
                && container["resources"]["requests"]["memory"]
                    .as_str()
                    .is_some(),
            "{overlay}: {name} requests CPU and memory"
        );
        let from = container["envFrom"].as_sequence().expect("envFrom");
        for source in from {
            let map = str_at(source, &["configMapRef", "name"]);
            assert!(
                config_maps.contains(&map),
                "{overlay}: {name} reads ConfigMap {map}, which is not rendered"
            );
        }
        let role_args = args(container);
        let needs_postgres = role_args != ["kafka", "init"];
        let postgres = env_value(container, "AETHER_POSTGRES_URL");
        assert_eq!(
            postgres.map(|var| str_at(var, &["valueFrom", "secretKeyRef", "name"])),
            needs_postgres.then_some("aether-postgres"),
            "{overlay}: {name}: the PostgreSQL URL (with its password) comes from a Secret"
        );
    }
    images.dedup();
    assert_eq!(
        images.len(),
        1,
        "{overlay}: one image for every role: {images:?}"
    );
    assert!(
        images[0].starts_with("ghcr.io/aetherconnect/aether:"),
        "{overlay}: {}",
        images[0]
    );

    for job in ["aether-migrate", "aether-kafka-init"] {
        get(objects, "Job", job);
    }

    let roles = expected_roles();
    let deployments: Vec<&str> = kind(objects, "Deployment").map(|(name, _)| name).collect();
    assert_eq!(
        deployments.len(),
        roles.len(),
        "{overlay}: one Deployment per role and projection: {deployments:?}"
    );
    for (name, expected_args) in &roles {
        let deployment = get(objects, "Deployment", name);
        let container = container(deployment);
        assert_eq!(args(container), *expected_args, "{overlay}: {name}");
        // The probes ask the port the role listens on, on the paths it serves.
        let listen = str_at(
            env_value(container, "AETHER_LISTEN").expect("AETHER_LISTEN"),
            &["value"],
        );
        let port: u64 = listen
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("AETHER_LISTEN has a port");
        let ports = container["ports"].as_sequence().expect("ports");
        let named: BTreeMap<&str, u64> = ports
            .iter()
            .map(|p| (str_at(p, &["name"]), p["containerPort"].as_u64().unwrap()))
            .collect();
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &container[probe]["httpGet"];
            assert_eq!(
                get["path"].as_str(),
                Some(path),
                "{overlay}: {name} {probe}"
            );
            let probe_port = match &get["port"] {
                Value::Number(number) => number.as_u64().unwrap(),
                Value::String(port_name) => named[port_name.as_str()],
                other => panic!("{overlay}: {name} {probe} port {other:?}"),
            };
            assert_eq!(
                probe_port, port,
                "{overlay}: {name} {probe} asks the listen port"
            );
        }
        // Graceful termination: longer than the grace the process gives open connections.
        let grace = at(
            deployment,
            &["spec", "template", "spec", "terminationGracePeriodSeconds"],
        )
        .as_u64()
        .expect("terminationGracePeriodSeconds");
        assert!(
            grace > 10,
            "{overlay}: {name} terminationGracePeriodSeconds {grace}"
        );
        // The API and the edge check tokens: they mount the keyring Secret where the variable
        // points.
        let keyring = env_value(container, "AETHER_JWT_SECRET_FILE");
        if name == "aether-api" || name == "aether-edge" {
            let file = str_at(keyring.expect("AETHER_JWT_SECRET_FILE"), &["value"]);
            let mount = container["volumeMounts"]
                .as_sequence()
                .expect("volumeMounts")
                .iter()
                .find(|mount| file.starts_with(str_at(mount, &["mountPath"])))
                .unwrap_or_else(|| panic!("{overlay}: {name}: nothing mounted at {file}"));
            let volume = str_at(mount, &["name"]);
            let volumes = at(deployment, &["spec", "template", "spec", "volumes"])
                .as_sequence()
                .expect("volumes");
            let secret = volumes
                .iter()
                .find(|v| v["name"].as_str() == Some(volume))
                .map(|v| str_at(v, &["secret", "secretName"]));
            assert_eq!(secret, Some("aether-keyring"), "{overlay}: {name}");
            // Clients reach them through a Service on the same port.
            let service = get(objects, "Service", name);
            assert_eq!(
                str_at(service, &["spec", "selector", "app.kubernetes.io/name"]),
                *name
            );
            // Scaled by CPU.
            let hpa = get(objects, "HorizontalPodAutoscaler", name);
            assert_eq!(str_at(hpa, &["spec", "scaleTargetRef", "name"]), *name);
        } else {
            assert!(keyring.is_none(), "{overlay}: {name} needs no signing keys");
        }
        if name.starts_with("aether-projector-") {
            assert_eq!(
                str_at(deployment, &["spec", "strategy", "type"]),
                "Recreate",
                "{overlay}: never two processes of one projection during a rollout"
            );
        }
    }
}

#[test]
fn both_overlays_render_every_role_with_probes_config_and_secrets() {
    for overlay in ["dev", "prod"] {
        let Some(objects) = render(overlay) else {
            return;
        };
        check_overlay(overlay, &objects);
    }
}

#[test]
fn production_keeps_instances_through_disruptions_and_dev_stays_small() {
    let (Some(prod), Some(dev)) = (render("prod"), render("dev")) else {
        return;
    };
    // The relay runs a hot standby; API and edge never drop below one through a node drain.
    let replicas = |objects: &BTreeMap<_, _>, name| {
        get(objects, "Deployment", name)["spec"]["replicas"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(replicas(&prod, "aether-relay"), 2);
    assert!(replicas(&prod, "aether-api") >= 3);
    assert!(replicas(&prod, "aether-edge") >= 3);
    for name in ["aether-relay", "aether-api", "aether-edge"] {
        let pdb = get(&prod, "PodDisruptionBudget", name);
        assert_eq!(
            str_at(
                pdb,
                &["spec", "selector", "matchLabels", "app.kubernetes.io/name"]
            ),
            name
        );
    }
    let tag = |objects: &BTreeMap<(String, String), Value>| {
        str_at(
            container(get(objects, "Deployment", "aether-api")),
            &["image"],
        )
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned()
    };
    assert_ne!(tag(&prod), "latest", "production pins its image");
    assert_eq!(
        str_at(
            get(&prod, "Deployment", "aether-api"),
            &["metadata", "namespace"]
        ),
        "aether"
    );
    // Dev: one of each, no disruption budgets that would block draining the only instance.
    for name in ["aether-relay", "aether-api", "aether-edge"] {
        assert_eq!(replicas(&dev, name), 1, "dev: {name}");
    }
    assert!(kind(&dev, "PodDisruptionBudget").next().is_none());
}
