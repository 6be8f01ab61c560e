//! The sampling decision of a request's server span, as the OpenTelemetry
//! specification defines the `OTEL_TRACES_SAMPLER` samplers and the Rust
//! SDK implements them:
//!
//! - `always_on` / `always_off`: every trace / none;
//! - `traceidratio` (ratio `r`): the trace when the low 8 bytes of its id,
//!   read big-endian and shifted right by one, are below `r · 2⁶³` (every
//!   trace at `r ≥ 1`), so every service sampling by the same ratio keeps
//!   the same traces;
//! - `parentbased_*`: a caller's `traceparent` decides by its sampled flag;
//!   without one (or with a malformed one) the named root sampler does.
//!
//! Only server spans are sampled: every span under a sampled one is
//! sampled too (each sampler above keeps a sampled parent's children), and
//! nothing is made under a dropped one.

use opentelemetry::trace::{SpanContext, TraceId};

use super::SamplerChoice;

impl SamplerChoice {
    /// Whether the trace `trace_id`, continued from `parent` (a valid remote
    /// context) or started here, is recorded.
    pub(super) fn samples(self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        let root = match self {
            Self::AlwaysOn => return true,
            Self::AlwaysOff => return false,
            Self::Ratio(r) => return by_ratio(r, trace_id),
            Self::ParentBasedAlwaysOn => Root::On,
            Self::ParentBasedAlwaysOff => Root::Off,
            Self::ParentBasedRatio(r) => Root::Ratio(r),
        };
        if let Some(parent) = parent {
            return parent.is_sampled();
        }
        match root {
            Root::On => true,
            Root::Off => false,
            Root::Ratio(r) => by_ratio(r, trace_id),
        }
    }
}

enum Root {
    On,
    Off,
    Ratio(f64),
}

/// The trace-id ratio test (the SDK's `sample_based_on_probability`).
fn by_ratio(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    (u64::from_be_bytes(low) >> 1) < bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceState};

    fn id(low: u64) -> TraceId {
        TraceId::from((0xdead_beef_u128 << 64) | u128::from(low))
    }

    fn parent(sampled: bool, remote: bool) -> SpanContext {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanContext::new(id(7), SpanId::from(9), flags, remote, TraceState::NONE)
    }

    #[test]
    fn ratio_edges() {
        for low in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(!SamplerChoice::Ratio(0.0).samples(None, id(low)), "{low}");
            assert!(SamplerChoice::Ratio(1.0).samples(None, id(low)), "{low}");
            // Beyond the range: clamped.
            assert!(!SamplerChoice::Ratio(-0.5).samples(None, id(low)), "{low}");
            assert!(SamplerChoice::Ratio(1.5).samples(None, id(low)), "{low}");
        }
        // Half: the low half's top bit decides (the high half is ignored).
        let half = SamplerChoice::Ratio(0.5);
        assert!(half.samples(None, id(0)));
        assert!(half.samples(None, id((1 << 63) - 1)));
        assert!(!half.samples(None, id(1 << 63)));
        assert!(!half.samples(None, TraceId::from(u128::from(u64::MAX))));
        assert!(half.samples(None, TraceId::from(u128::MAX << 64)));
    }

    #[test]
    fn a_ratio_keeps_about_that_share_of_random_traces() {
        let kept = (0..20_000)
            .filter(|_| SamplerChoice::Ratio(0.25).samples(None, super::super::ids::trace_id()))
            .count();
        assert!((4_400..5_600).contains(&kept), "{kept} of 20000");
    }

    #[test]
    fn parent_based_samplers_follow_the_parent() {
        let all = [
            SamplerChoice::ParentBasedAlwaysOn,
            SamplerChoice::ParentBasedAlwaysOff,
            SamplerChoice::ParentBasedRatio(0.0),
            SamplerChoice::ParentBasedRatio(1.0),
        ];
        for sampler in all {
            for remote in [true, false] {
                assert!(
                    sampler.samples(Some(&parent(true, remote)), id(u64::MAX)),
                    "{sampler:?} under a sampled parent"
                );
                assert!(
                    !sampler.samples(Some(&parent(false, remote)), id(0)),
                    "{sampler:?} under an unsampled parent"
                );
            }
        }
        // Without a parent, the root sampler decides.
        assert!(SamplerChoice::ParentBasedAlwaysOn.samples(None, id(0)));
        assert!(!SamplerChoice::ParentBasedAlwaysOff.samples(None, id(0)));
        assert!(!SamplerChoice::ParentBasedRatio(0.0).samples(None, id(0)));
        assert!(SamplerChoice::ParentBasedRatio(0.5).samples(None, id(0)));
        assert!(!SamplerChoice::ParentBasedRatio(0.5).samples(None, id(u64::MAX)));
    }

    #[test]
    fn samplers_that_are_not_parent_based_ignore_the_parent() {
        let sampled = parent(true, true);
        let unsampled = parent(false, true);
        assert!(SamplerChoice::AlwaysOn.samples(Some(&unsampled), id(0)));
        assert!(!SamplerChoice::AlwaysOff.samples(Some(&sampled), id(0)));
        assert!(!SamplerChoice::Ratio(0.0).samples(Some(&sampled), id(0)));
        assert!(SamplerChoice::Ratio(1.0).samples(Some(&unsampled), id(0)));
    }

    /// The SDK's sampler, the reference these follow.
    #[test]
    fn decisions_are_the_sdks() {
        use opentelemetry::Context;
        use opentelemetry::trace::{SpanKind, TraceContextExt};
        use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};
        let sdk = |choice: SamplerChoice| {
            let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
            match choice {
                SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
                SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
                SamplerChoice::Ratio(r) => Sampler::TraceIdRatioBased(r),
                SamplerChoice::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
                SamplerChoice::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
                SamplerChoice::ParentBasedRatio(r) => parent_based(Sampler::TraceIdRatioBased(r)),
            }
        };
        let choices = [
            SamplerChoice::AlwaysOn,
            SamplerChoice::AlwaysOff,
            SamplerChoice::Ratio(0.3),
            SamplerChoice::ParentBasedAlwaysOn,
            SamplerChoice::ParentBasedAlwaysOff,
            SamplerChoice::ParentBasedRatio(0.7),
        ];
        let parents = [None, Some(parent(true, true)), Some(parent(false, true))];
        for choice in choices {
            for p in &parents {
                let cx = p
                    .clone()
                    .map_or_else(Context::new, |p| Context::new().with_remote_span_context(p));
                for _ in 0..200 {
                    let trace_id = super::super::ids::trace_id();
                    let theirs = sdk(choice)
                        .should_sample(Some(&cx), trace_id, "GET", &SpanKind::Server, &[], &[])
                        .decision
                        == SamplingDecision::RecordAndSample;
                    assert_eq!(
                        choice.samples(p.as_ref(), trace_id),
                        theirs,
                        "{choice:?} {p:?}"
                    );
                }
            }
        }
    }
}
