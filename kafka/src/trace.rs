//! W3C trace context across the hops of one message: the API stores the `traceparent` of the
//! request that decided an event beside the event, the relay and the projectors carry it in a
//! Kafka header of the same name, and each hop opens its span as a child of it, so that one
//! trace holds the request, the publish, every projector's apply and every edge's delivery.
//!
//! The library crates only read and set context here; the binary decides whether spans are
//! exported at all. Without its OpenTelemetry layer the current span has no trace context,
//! [`current_traceparent`] is `None`, nothing is stored or sent, and [`follow`] does nothing.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (HTTP and Kafka) and metadata key of the trace context, as W3C Trace Context
/// names it.
pub const TRACEPARENT: &str = "traceparent";

/// The only version of `traceparent` this writes; later versions are read by their first four
/// fields, as the specification asks.
const VERSION: &str = "00";

/// The `traceparent` of the current span, when it belongs to a trace (sampled or not: a
/// downstream parent-based sampler then follows the same decision).
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    format(span.span_context())
}

/// `00-<trace id>-<span id>-<flags>` of `context`; `None` for an invalid (empty) context.
pub fn format(context: &SpanContext) -> Option<String> {
    context.is_valid().then(|| {
        format!(
            "{VERSION}-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        )
    })
}

/// The remote span context a `traceparent` value names; `None` for anything malformed (a
/// header comes from outside: it is never trusted to be well formed).
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut fields = traceparent.trim().split('-');
    let version = fields.next()?;
    let trace_id = fields.next()?;
    let span_id = fields.next()?;
    let flags = fields.next()?;
    let rest = fields.next();
    let hex = |field: &str, len: usize| {
        field.len() == len
            && field
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) {
        return None;
    }
    // Version 00 has exactly four fields; a later version may append more.
    if (version == VERSION && rest.is_some()) || !hex(flags, 2) {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// Makes `traceparent` the parent of `span`, which must not have been entered yet. A missing or
/// malformed value leaves the span where it is (a root, or the child of the current span).
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(remote) = traceparent.and_then(parse) else {
        return;
    };
    let parent = opentelemetry::Context::new().with_remote_span_context(remote);
    // Fails only where no OpenTelemetry layer is installed or the span is disabled: then there
    // is nothing to link.
    let _ = span.set_parent(parent);
}

/// The `traceparent` header of a Kafka record, if it has a readable one.
pub fn header<H: Headers>(headers: Option<&H>) -> Option<String> {
    headers?
        .iter()
        .find(|header| header.key == TRACEPARENT)
        .and_then(|header| header.value)
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::to_owned)
}

/// `headers` with `traceparent` added, when there is one.
pub fn with_header(headers: OwnedHeaders, traceparent: Option<&str>) -> OwnedHeaders {
    match traceparent {
        Some(value) => headers.insert(Header {
            key: TRACEPARENT,
            value: Some(value),
        }),
        None => headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_survives_the_round_trip() {
        let context = parse(SAMPLE).expect("valid");
        assert!(context.is_sampled());
        assert!(context.is_remote());
        assert_eq!(format(&context).as_deref(), Some(SAMPLE));
    }

    #[test]
    fn malformed_values_name_no_parent() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_known_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes";
        let context = parse(later).expect("valid");
        assert!(!context.is_sampled());
    }

    #[test]
    fn outside_a_traced_span_there_is_no_traceparent() {
        assert_eq!(current_traceparent(), None);
        let span = tracing::info_span!("untraced");
        follow(&span, Some(SAMPLE));
        assert_eq!(span.in_scope(current_traceparent), None);
    }

    #[test]
    fn the_header_is_added_and_read_back() {
        let headers = with_header(OwnedHeaders::new(), Some(SAMPLE));
        assert_eq!(header(Some(&headers)).as_deref(), Some(SAMPLE));
        let none = with_header(OwnedHeaders::new(), None);
        assert_eq!(header(Some(&none)), None);
        assert_eq!(header::<OwnedHeaders>(None), None);
    }
}
