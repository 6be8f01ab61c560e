//! The tracing settings: the standard `OTEL_*` variables, read from a map so
//! a test (or an embedder) configures a server without touching the process
//! environment. `crate::telemetry` starts the span pipeline they describe.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | none | the full URL spans are posted to |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | none | the collector's base URL; spans go to `<base>/v1/traces` |
//! | `OTEL_SERVICE_NAME` | `buntime` | `service.name` of every span |
//! | `OTEL_RESOURCE_ATTRIBUTES` | none | `key=value,…` added to every span's resource |
//! | `OTEL_TRACES_SAMPLER` | `parentbased_always_on` | which traces are recorded |
//! | `OTEL_TRACES_SAMPLER_ARG` | `1.0` | the ratio of the `*traceidratio` samplers |
//! | `OTEL_BSP_SCHEDULE_DELAY` | 5000 | milliseconds between exports of finished spans |
//! | `OTEL_BSP_MAX_QUEUE_SIZE` | 2048 | finished spans that may wait for export (more are dropped, counted) |
//! | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | 512 | spans per export (at most the queue size) |
//! | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` | 10000 | milliseconds one export may take |
//! | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` | none | `key=value,…` headers sent with every export (values percent-encoded) |
//!
//! Without an endpoint there is no tracing at all.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::KeyValue;

use super::ConfigError;

/// Where and how spans are exported: set only when an endpoint is.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// The URL spans are posted to (OTLP over HTTP, protobuf).
    pub endpoint: String,
    /// `service.name`.
    pub service_name: String,
    /// The rest of the resource (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    /// Which traces are recorded.
    pub sampler: SamplerChoice,
    /// Time between exports (`None`: the default, 5 s).
    pub schedule_delay: Option<Duration>,
    /// Spans that may wait for export (`None`: the default, 2048).
    pub max_queue_size: Option<usize>,
    /// Spans per export (`None`: the default, 512).
    pub max_export_batch_size: Option<usize>,
    /// Longest an export may take.
    pub export_timeout: Duration,
    /// Headers sent with every export (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`,
    /// else `OTEL_EXPORTER_OTLP_HEADERS`), each a valid HTTP header.
    pub headers: Vec<(String, String)>,
}

/// `OTEL_TRACES_SAMPLER` and its argument (the decision itself is
/// `crate::telemetry`'s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerChoice {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`: this fraction of traces.
    Ratio(f64),
    /// `parentbased_always_on` (the default).
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: the caller's decision, else this fraction.
    ParentBasedRatio(f64),
}

/// The default timeout of one export (the specification's 10 s).
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The specification's defaults of the batch span processor's sizes.
const DEFAULT_MAX_QUEUE_SIZE: usize = 2048;
const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;

/// The largest `OTEL_BSP_MAX_QUEUE_SIZE` taken: a waiting span takes about
/// 300 bytes, so this is a few hundred MiB at most.
const MAX_QUEUE_SIZE: usize = 1 << 20;

impl TraceConfig {
    /// Reads the tracing settings from `vars`; `Ok(None)` when no endpoint is
    /// set (tracing off).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use buntime::telemetry::TraceConfig;
    /// let off = TraceConfig::from_map(&HashMap::new()).unwrap();
    /// assert!(off.is_none());
    /// let vars = HashMap::from([(
    ///     "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
    ///     "http://collector:4318".to_string(),
    /// )]);
    /// let on = TraceConfig::from_map(&vars).unwrap().unwrap();
    /// assert_eq!(on.endpoint, "http://collector:4318/v1/traces");
    /// ```
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Option<Self>, ConfigError> {
        let var = |k: &str| vars.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let err = |name: &str, msg: String| ConfigError::new(name.as_ref(), "", msg);
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(full), _) => full.to_owned(),
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        let resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(list) => parse_pairs(list, "deployment.environment.name=prod,team=web")
                .map_err(|m| err("OTEL_RESOURCE_ATTRIBUTES", m))?,
            None => Vec::new(),
        };
        let service_name = var("OTEL_SERVICE_NAME")
            .map(str::to_owned)
            .or_else(|| {
                resource
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "buntime".to_owned());
        let sampler = parse_sampler(var("OTEL_TRACES_SAMPLER"), var("OTEL_TRACES_SAMPLER_ARG"))
            .map_err(|m| err("OTEL_TRACES_SAMPLER", m))?;
        let millis = |name: &str| -> Result<Option<Duration>, ConfigError> {
            var(name)
                .map(|v| {
                    v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                        err(name, format!("`{v}` is not a whole number of milliseconds"))
                    })
                })
                .transpose()
        };
        let schedule_delay = millis("OTEL_BSP_SCHEDULE_DELAY")?;
        let spans = |name: &str| -> Result<Option<usize>, ConfigError> {
            var(name)
                .map(|v| match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_QUEUE_SIZE).contains(&n) => Ok(n),
                    _ => Err(err(
                        name,
                        format!("`{v}` is not a number of spans from 1 to {MAX_QUEUE_SIZE}"),
                    )),
                })
                .transpose()
        };
        let max_queue_size = spans("OTEL_BSP_MAX_QUEUE_SIZE")?;
        let max_export_batch_size = spans("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")?;
        let queue = max_queue_size.unwrap_or(DEFAULT_MAX_QUEUE_SIZE);
        let batch = max_export_batch_size.unwrap_or(DEFAULT_MAX_EXPORT_BATCH_SIZE);
        if batch > queue {
            return Err(err(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                format!(
                    "a batch of {batch} spans does not fit the queue of {queue} (OTEL_BSP_MAX_QUEUE_SIZE{}): raise the queue size or lower the batch size",
                    if max_queue_size.is_none() {
                        ", the default"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let export_timeout = match millis("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")? {
            Some(t) => t,
            None => millis("OTEL_EXPORTER_OTLP_TIMEOUT")?.unwrap_or(DEFAULT_EXPORT_TIMEOUT),
        };
        let headers = match (
            var("OTEL_EXPORTER_OTLP_TRACES_HEADERS"),
            var("OTEL_EXPORTER_OTLP_HEADERS"),
        ) {
            (Some(list), _) => {
                parse_headers(list).map_err(|m| err("OTEL_EXPORTER_OTLP_TRACES_HEADERS", m))?
            }
            (None, Some(list)) => {
                parse_headers(list).map_err(|m| err("OTEL_EXPORTER_OTLP_HEADERS", m))?
            }
            (None, None) => Vec::new(),
        };
        Ok(Some(Self {
            endpoint,
            service_name,
            resource,
            sampler,
            schedule_delay,
            max_queue_size,
            max_export_batch_size,
            export_timeout,
            headers,
        }))
    }

    /// Spans that may wait for export (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub(crate) fn queue_size(&self) -> usize {
        self.max_queue_size.unwrap_or(DEFAULT_MAX_QUEUE_SIZE)
    }

    /// Spans per export (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub(crate) fn batch_size(&self) -> usize {
        self.max_export_batch_size
            .unwrap_or(DEFAULT_MAX_EXPORT_BATCH_SIZE)
    }

    /// The resource attributes, `service.name` and `service.version` included.
    pub(crate) fn resource_attributes(&self) -> Vec<KeyValue> {
        let mut out: Vec<KeyValue> = self
            .resource
            .iter()
            .filter(|(k, _)| k != "service.name")
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        out.push(KeyValue::new("service.name", self.service_name.clone()));
        if !self.resource.iter().any(|(k, _)| k == "service.version") {
            out.push(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
        }
        out
    }
}

/// `key=value,key=value`, values percent-encoded (the W3C baggage octets);
/// `example` is shown in the error for a malformed pair.
fn parse_pairs(list: &str, example: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not `key=value` (write e.g. `{example}`)"))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(format!("`{pair}` has an empty key"));
            }
            let v = percent_encoding::percent_decode_str(v.trim())
                .decode_utf8()
                .map_err(|_| format!("the value of `{k}` is not UTF-8 once percent-decoded"))?;
            Ok((k.to_owned(), v.into_owned()))
        })
        .collect()
}

/// `key=value,key=value` export headers, values percent-encoded.
fn parse_headers(list: &str) -> Result<Vec<(String, String)>, String> {
    let pairs = parse_pairs(list, "api-key=secret,x-tenant=web")?;
    for (name, value) in &pairs {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!(
                "`{name}` is not an HTTP header name (letters, digits and `-`, e.g. `api-key=…`)"
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(format!(
                "the value of `{name}` is not a valid HTTP header value (no control characters or line breaks)"
            ));
        }
    }
    Ok(pairs)
}

fn parse_sampler(name: Option<&str>, arg: Option<&str>) -> Result<SamplerChoice, String> {
    let ratio = || -> Result<f64, String> {
        match arg {
            None => Ok(1.0),
            Some(a) => a
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    format!("OTEL_TRACES_SAMPLER_ARG `{a}` is not a ratio from 0.0 to 1.0")
                }),
        }
    };
    Ok(match name.unwrap_or("parentbased_always_on") {
        "always_on" => SamplerChoice::AlwaysOn,
        "always_off" => SamplerChoice::AlwaysOff,
        "traceidratio" => SamplerChoice::Ratio(ratio()?),
        "parentbased_always_on" => SamplerChoice::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerChoice::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerChoice::ParentBasedRatio(ratio()?),
        other => {
            return Err(format!(
                "`{other}` is not a sampler Buntime knows: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Option<TraceConfig>, ConfigError> {
        let vars = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TraceConfig::from_map(&vars)
    }

    #[test]
    fn no_endpoint_means_no_tracing() {
        assert!(config(&[("OTEL_SERVICE_NAME", "x")]).unwrap().is_none());
        assert!(
            config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_traces_endpoint_is_used_as_given_and_the_base_gets_the_path() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318/"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b/custom"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://b/custom");
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "http://a:4318/v1/traces");
        assert_eq!(c.sampler, SamplerChoice::ParentBasedAlwaysOn);
        assert_eq!(c.export_timeout, DEFAULT_EXPORT_TIMEOUT);
        assert_eq!(c.service_name, "buntime");
    }

    #[test]
    fn samplers_resource_and_timings() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=shop, team=web%20ops",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8192"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2048"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.max_queue_size, Some(8192));
        assert_eq!(c.max_export_batch_size, Some(2048));
        assert_eq!(c.sampler, SamplerChoice::ParentBasedRatio(0.25));
        assert_eq!(c.service_name, "shop");
        assert_eq!(c.resource[1], ("team".into(), "web ops".into()));
        assert_eq!(c.schedule_delay, Some(Duration::from_millis(50)));
        assert_eq!(c.export_timeout, Duration::from_secs(2));
        let attrs = c.resource_attributes();
        let names: Vec<_> = attrs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(names, ["team", "service.name", "service.version"]);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_fix() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a");
        let e = config(&[base, ("OTEL_TRACES_SAMPLER", "sometimes")]).unwrap_err();
        assert!(e.message.contains("parentbased_traceidratio"), "{e:?}");
        let e = config(&[
            base,
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ])
        .unwrap_err();
        assert!(e.message.contains("0.0 to 1.0"), "{e:?}");
        let e = config(&[base, ("OTEL_RESOURCE_ATTRIBUTES", "team")]).unwrap_err();
        assert_eq!(e.source, std::path::Path::new("OTEL_RESOURCE_ATTRIBUTES"));
        let e = config(&[base, ("OTEL_BSP_SCHEDULE_DELAY", "5s")]).unwrap_err();
        assert!(e.message.contains("milliseconds"), "{e:?}");
        for bad in ["0", "-1", "lots", "1048577"] {
            let e = config(&[base, ("OTEL_BSP_MAX_QUEUE_SIZE", bad)]).unwrap_err();
            assert_eq!(e.source, std::path::Path::new("OTEL_BSP_MAX_QUEUE_SIZE"));
            assert!(e.message.contains("number of spans"), "{e:?}");
        }
        let e = config(&[base, ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096")]).unwrap_err();
        assert_eq!(
            e.source,
            std::path::Path::new("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
        );
        assert!(
            e.message
                .contains("queue of 2048 (OTEL_BSP_MAX_QUEUE_SIZE, the default)"),
            "{e:?}"
        );
        let e = config(&[base, ("OTEL_EXPORTER_OTLP_HEADERS", "bad name=1")]).unwrap_err();
        assert!(e.message.contains("header name"), "{e:?}");
        let e = config(&[base, ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=%0Ax")]).unwrap_err();
        assert_eq!(
            e.source,
            std::path::Path::new("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        );
    }

    #[test]
    fn export_headers_the_traces_variable_first() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a");
        let both = config(&[
            base,
            ("OTEL_EXPORTER_OTLP_HEADERS", "x=1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "api-key=s%3Dcret, x-team = web",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            both.headers,
            [
                ("api-key".into(), "s=cret".into()),
                ("x-team".into(), "web".into())
            ]
        );
        let general = config(&[base, ("OTEL_EXPORTER_OTLP_HEADERS", "x=1")])
            .unwrap()
            .unwrap();
        assert_eq!(general.headers, [("x".into(), "1".into())]);
    }
}
