//! `aether log replay` against a real broker, as an analytics consumer runs it: from the
//! beginning by default, from an offset, from a time, and following new events until stopped.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aether_kafka::admin::init_topics;
use aether_kafka::KafkaConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

const TOPIC: &str = "aether.messages.events.v1";

async fn publish(producer: &FutureProducer, topic: &str, partition: i32, n: u32, at: i64) {
    let payload = serde_json::json!({ "n": n }).to_string();
    let key = format!("k{partition}");
    producer
        .send(
            FutureRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&payload)
                .timestamp(at),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .expect("the broker takes the event");
}

fn replay(config: &KafkaConfig, extra: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(["log", "replay", "--topic", TOPIC])
        .args(extra)
        .env("AETHER_KAFKA_BOOTSTRAP", &config.bootstrap)
        .env("AETHER_TOPIC_PREFIX", &config.topic_prefix)
        .output()
        .expect("aether runs");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    (
        out.status.code(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `n` of each line, in order.
fn numbers(lines: &[Value]) -> Vec<u64> {
    let mut numbers: Vec<u64> = lines.iter().map(|l| l["n"].as_u64().unwrap()).collect();
    numbers.sort_unstable();
    numbers
}

#[tokio::test]
async fn replays_from_the_beginning_an_offset_or_a_time_and_follows() -> anyhow::Result<()> {
    let config = aether_test_support::kafka_config(2);
    init_topics(&config).await?;
    let topic = config.topic(TOPIC);
    let producer: FutureProducer = config.producer()?;
    // Three events in each partition an hour ago, two more in each now.
    let now = chrono::Utc::now().timestamp_millis();
    let hour_ago = now - 3_600_000;
    for n in 0..6 {
        publish(&producer, &topic, (n % 2) as i32, n, hour_ago).await;
    }
    for n in 6..10 {
        publish(&producer, &topic, (n % 2) as i32, n, now).await;
    }

    // No flag: the whole log, each line with its coordinates.
    let (code, lines, stderr) = replay(&config, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(numbers(&lines), (0..10).collect::<Vec<_>>());
    assert!(stderr.contains("10 events replayed"), "{stderr}");
    for line in &lines {
        let kafka = &line["_kafka"];
        assert_eq!(
            kafka["key"].as_str(),
            Some(format!("k{}", kafka["partition"]).as_str())
        );
    }
    // In each partition, offsets in order.
    for partition in 0..2 {
        let offsets: Vec<i64> = lines
            .iter()
            .filter(|l| l["_kafka"]["partition"] == partition)
            .map(|l| l["_kafka"]["offset"].as_i64().unwrap())
            .collect();
        assert_eq!(offsets, (0..5).collect::<Vec<_>>(), "partition {partition}");
    }
    // --from-beginning, as scripts already pass it: the same.
    let (code, again, _) = replay(&config, &["--from-beginning"]);
    assert_eq!(code, Some(0));
    assert_eq!(numbers(&again), numbers(&lines));

    // From offset 3 of each partition: the last two of each.
    let (code, tail, stderr) = replay(&config, &["--from-offset", "3"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(numbers(&tail), [6, 7, 8, 9]);
    // Past the end: nothing, and no error.
    let (code, none, _) = replay(&config, &["--from-offset", "99"]);
    assert_eq!((code, none.len()), (Some(0), 0));

    // From a time: what arrived since ten minutes ago.
    let since = chrono::DateTime::from_timestamp_millis(now - 600_000)
        .unwrap()
        .to_rfc3339();
    let (code, recent, stderr) = replay(&config, &["--from-time", &since]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(numbers(&recent), [6, 7, 8, 9]);

    // Bad input: a clear message and exit code 2.
    for bad in [
        vec!["--from-offset", "1", "--from-time", &since],
        vec!["--from-offset", "-1"],
        vec!["--from-time", "yesterday"],
    ] {
        let (code, _, stderr) = replay(&config, &bad);
        assert_eq!(code, Some(2), "{bad:?}: {stderr}");
    }

    // Following: the log so far, then an event published while it runs, then a clean stop.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_aether"))
        .args([
            "log",
            "replay",
            "--topic",
            TOPIC,
            "--from-offset",
            "4",
            "--follow",
        ])
        .env("AETHER_KAFKA_BOOTSTRAP", &config.bootstrap)
        .env("AETHER_TOPIC_PREFIX", &config.topic_prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = follower.stdout.take().expect("piped");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(serde_json::from_str::<Value>(&line)?);
        }
    }
    assert_eq!(numbers(&seen), [8, 9], "the log so far");
    publish(
        &producer,
        &topic,
        1,
        10,
        chrono::Utc::now().timestamp_millis(),
    )
    .await;
    while seen.len() < 3 && Instant::now() < deadline {
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(serde_json::from_str::<Value>(&line)?);
        }
    }
    assert_eq!(numbers(&seen), [8, 9, 10], "the new event, as it came");
    let pid = i32::try_from(follower.id())?;
    // SIGTERM, as a supervisor stops it.
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let stopped = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = follower.try_wait()? {
            break status;
        }
        assert!(Instant::now() < stopped, "--follow did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    Ok(())
}
