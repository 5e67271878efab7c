//! Distributed tracing: the process's spans exported over OTLP (HTTP, protobuf) when an
//! OpenTelemetry endpoint is configured, and trace ids on the log lines written inside a
//! sampled span.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and
//! `OTEL_SDK_DISABLED` is not `true`): without them no layer is installed, no context is
//! stored with events or sent in headers, and the cost is nothing. Everything else follows the
//! OpenTelemetry environment variables, read by the SDK: `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`), `OTEL_BSP_*` for the batch
//! processor, `OTEL_EXPORTER_OTLP_TIMEOUT` and `_HEADERS`, `OTEL_RESOURCE_ATTRIBUTES`, and
//! `OTEL_SERVICE_NAME` to replace the role's service name. See docs/tracing.md.

use std::fmt;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The variables that name where spans go; tracing is on when one of them is set.
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Whether this process exports spans: an endpoint is configured and the SDK is not disabled.
pub fn configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED")
        .is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"));
    !disabled && ENDPOINT_VARIABLES.iter().any(|name| set(name))
}

/// The service name of a role as traces show it: `aether-api`, `aether-relay`,
/// `aether-projector-<projection>`, `aether-edge`, `aether-all`, `aether-dev`.
pub fn service_name(role: &str, projection: Option<&str>) -> String {
    match projection {
        Some(projection) if role == "projector" => format!("aether-projector-{projection}"),
        _ => format!("aether-{role}"),
    }
}

/// The exporting side of the process, kept by `main` until the process ends: dropping it
/// without [`Self::shutdown`] loses the spans still queued.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Exports what is still queued (up to the export timeout) and stops the exporter.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "spans still queued could not be exported at shutdown");
        }
    }
}

/// The OpenTelemetry layer of a process that exports spans as `service`, and what must be
/// shut down at the end; `None` when tracing is not [`configured`].
///
/// Spans go through the SDK's batch processor: ended spans wait in a bounded queue
/// (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048) that a thread of its own exports every
/// `OTEL_BSP_SCHEDULE_DELAY` (5 s) or whenever a batch is full. A request only ever adds to
/// the queue: when the collector is slow or down the queue fills and further spans are
/// dropped (the SDK warns once, and logs the total at shutdown), never waited for.
///
/// Only the product's own spans are exported (targets `aether…`, at `INFO` and above): the
/// exporter's HTTP client and the libraries' internals would otherwise trace themselves.
pub fn layer<S>(service: &str) -> anyhow::Result<Option<(impl Layer<S>, Exporter)>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if !configured() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    let resource = if std::env::var("OTEL_SERVICE_NAME").is_ok() {
        Resource::builder().build()
    } else {
        Resource::builder()
            .with_service_name(service.to_owned())
            .build()
    };
    // The sampler comes from OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (the SDK's
    // default configuration reads them), the batch settings from OTEL_BSP_*.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("aether");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::filter_fn(exported));
    Ok(Some((layer, Exporter { provider })))
}

/// Whether the OpenTelemetry layer sees a span or event: the product's own, `INFO` and above.
fn exported(metadata: &Metadata<'_>) -> bool {
    metadata.target().starts_with("aether") && *metadata.level() <= tracing::Level::INFO
}

/// A log line format that adds `trace_id` and `span_id` to the lines written inside a sampled
/// span, so that a log line leads to its trace and back: as two more fields of a JSON line, or
/// `trace_id=… span_id=…` at the end of a text line. Other lines are `inner`'s, unchanged.
#[derive(Debug)]
pub struct WithTraceIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The OpenTelemetry layer makes the entered span's context the current one.
        let context = opentelemetry::Context::current();
        let span = context.span();
        let ids = span.span_context();
        if !ids.is_sampled() {
            return self.0.format_event(ctx, writer, event);
        }
        // Formatted into a buffer, then the ids put in before its end (a traced text line
        // loses its colours: the buffer is not a terminal).
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let (trace_id, span_id) = (ids.trace_id(), ids.span_id());
        let body = line.trim_end_matches('\n');
        match body.strip_suffix('}').filter(|_| body.starts_with('{')) {
            Some(open) => write!(
                writer,
                "{open},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            )?,
            None => write!(writer, "{body} trace_id={trace_id} span_id={span_id}")?,
        }
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// What the log layer wrote.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut written) = self.0.lock() {
                written.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Written {
        fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// Writes one line outside any span and one inside a sampled span, in JSON and in text.
    fn log_lines(json: bool) -> (Vec<String>, String) {
        let written = Written::default();
        let provider = SdkTracerProvider::builder().build();
        let sink = written.clone();
        let make = move || sink.clone();
        let trace_id = if json {
            let logs = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(WithTraceIds(
                    tracing_subscriber::fmt::format().json().flatten_event(true),
                ))
                .with_writer(make);
            let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
            let subscriber = tracing_subscriber::registry().with(logs).with(otel);
            tracing::subscriber::with_default(subscriber, emit)
        } else {
            let logs = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .event_format(WithTraceIds(tracing_subscriber::fmt::format()))
                .with_writer(make);
            let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
            let subscriber = tracing_subscriber::registry().with(logs).with(otel);
            tracing::subscriber::with_default(subscriber, emit)
        };
        (written.lines(), trace_id)
    }

    /// Logs outside and inside a span; returns the span's trace id.
    fn emit() -> String {
        tracing::info!("outside");
        let span = tracing::info_span!(target: "aether_test", "request");
        let _entered = span.enter();
        tracing::info!("inside");
        opentelemetry::Context::current()
            .span()
            .span_context()
            .trace_id()
            .to_string()
    }

    #[test]
    fn json_lines_inside_a_sampled_span_carry_its_ids() {
        let (lines, trace_id) = log_lines(true);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let outside: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON");
        assert!(outside.get("trace_id").is_none(), "{outside}");
        let inside: serde_json::Value = serde_json::from_str(&lines[1]).expect("JSON");
        assert_eq!(inside["message"], "inside");
        assert_eq!(inside["trace_id"], trace_id.as_str(), "{inside}");
        assert_eq!(
            inside["span_id"].as_str().map(str::len),
            Some(16),
            "{inside}"
        );
    }

    #[test]
    fn text_lines_inside_a_sampled_span_end_with_its_ids() {
        let (lines, trace_id) = log_lines(false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(!lines[0].contains("trace_id="), "{lines:?}");
        assert!(
            lines[1].contains(&format!(" trace_id={trace_id} span_id=")),
            "{lines:?}"
        );
    }

    #[test]
    fn each_role_has_its_service_name() {
        assert_eq!(service_name("api", None), "aether-api");
        assert_eq!(service_name("relay", None), "aether-relay");
        assert_eq!(service_name("edge", None), "aether-edge");
        assert_eq!(
            service_name("projector", Some("timeline")),
            "aether-projector-timeline"
        );
        assert_eq!(service_name("projector", None), "aether-projector");
    }

    #[test]
    fn only_the_products_spans_are_exported() {
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            let ours = tracing::info_span!(target: "aether_commands::relay", "x");
            let theirs = tracing::info_span!(target: "hyper::client", "x");
            let detail = tracing::debug_span!(target: "aether_commands::relay", "x");
            for (span, expected) in [(ours, true), (theirs, false), (detail, false)] {
                let metadata = span.metadata().expect("the registry enables every span");
                assert_eq!(exported(metadata), expected, "{metadata:?}");
            }
        });
    }
}
