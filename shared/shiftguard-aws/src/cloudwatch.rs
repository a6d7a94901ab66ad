//! CloudWatch: a version's traffic on an alias over a window (namespace `AWS/Lambda`, dimensions
//! `FunctionName`, `Resource` = `function:alias`, `ExecutedVersion`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, ScanBy, StandardUnit, StatusCode,
};
use shiftguard_core::release::DecisionError;
use shiftguard_core::release::gate::VersionMetrics;
use shiftguard_core::release::ports::HealthSignals;

use crate::error::AwsError;

/// One value to publish: metric name, dimensions, value (a count).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub name: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    pub value: f64,
    /// CloudWatch's unit name: `Count`, `Milliseconds`, `None`, …
    pub unit: &'static str,
}

/// CloudWatch reads on behalf of the gates.
#[derive(Clone, Debug)]
pub struct CloudWatchAdapter {
    client: Client,
}

impl CloudWatchAdapter {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        CloudWatchAdapter {
            client: Client::new(config),
        }
    }

    /// Invocations, errors (sums) and p95/p99 duration of `version` through `alias` over the last
    /// `window` (rounded up to whole minutes), in one `GetMetricData` call. No data points means
    /// zero invocations.
    pub async fn version_metrics(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        window: Duration,
    ) -> Result<VersionMetrics, AwsError> {
        let (start, end, period) = bounds(window)?;
        let dimensions = [
            ("FunctionName", function.to_owned()),
            ("Resource", format!("{function}:{alias}")),
            ("ExecutedVersion", version.to_owned()),
        ];
        let query = |id: &str, metric: &str, stat: &str| {
            lambda_query(id, metric, stat, period, &dimensions)
        };
        let doing = format!("GetMetricData {function}:{alias} version {version}");
        let queries = vec![
            query("invocations", "Invocations", "Sum"),
            query("errors", "Errors", "Sum"),
            query("p95", "Duration", "p95"),
            query("p99", "Duration", "p99"),
        ];
        let mut results = self.fetch(&doing, queries, start, end).await?;
        let mut values = |id: &str| results.remove(id).unwrap_or_default();
        Ok(VersionMetrics {
            version: version.to_owned(),
            invocations: values("invocations").iter().fold(0.0, |a, b| a + b),
            errors: values("errors").iter().fold(0.0, |a, b| a + b),
            p95_ms: values("p95").into_iter().reduce(f64::max),
            p99_ms: values("p99").into_iter().reduce(f64::max),
        })
    }

    /// How often each of `versions` of `function` was invoked in the last `window`: through
    /// each of `aliases` (dimension `ExecutedVersion`) and directly (`Resource` =
    /// `function:version`). Up to 500 queries per `GetMetricData` call (the API's limit).
    pub async fn invocations(
        &self,
        function: &str,
        aliases: &[String],
        versions: &[String],
        window: Duration,
    ) -> Result<Vec<(String, f64)>, AwsError> {
        let (start, end, period) = bounds(window)?;
        // (version index, query)
        let mut queries = Vec::new();
        for (index, version) in versions.iter().enumerate() {
            let mut resources: Vec<(String, Option<&str>)> = aliases
                .iter()
                .map(|alias| (format!("{function}:{alias}"), Some(version.as_str())))
                .collect();
            resources.push((format!("{function}:{version}"), None));
            for (resource, executed) in resources {
                let mut dimensions = vec![
                    ("FunctionName", function.to_owned()),
                    ("Resource", resource),
                ];
                dimensions.extend(executed.map(|v| ("ExecutedVersion", v.to_owned())));
                let id = format!("q{}", queries.len());
                let query = lambda_query(&id, "Invocations", "Sum", period, &dimensions);
                queries.push((index, query));
            }
        }
        let mut counts = vec![0.0; versions.len()];
        let doing = format!("GetMetricData {function} invocations");
        let indexes: Vec<usize> = queries.iter().map(|(index, _)| *index).collect();
        let results = self
            .fetch(
                &doing,
                queries.into_iter().map(|(_, q)| q).collect(),
                start,
                end,
            )
            .await?;
        for (n, index) in indexes.into_iter().enumerate() {
            let values = results.get(&format!("q{n}")).map_or(&[][..], Vec::as_slice);
            counts[index] += values.iter().fold(0.0, |a, b| a + b);
        }
        Ok(versions.iter().cloned().zip(counts).collect())
    }

    /// For each of `series` (a set of dimensions), the maximum of `name` in `namespace` with
    /// exactly those dimensions in the latest minute that has a value, looking back `within`;
    /// none when there is none. One `GetMetricData` call per 500 series.
    pub async fn latest_maximums(
        &self,
        namespace: &str,
        name: &str,
        series: &[Vec<(&str, String)>],
        within: Duration,
    ) -> Result<Vec<Option<f64>>, AwsError> {
        let (start, end, _) = bounds(within)?;
        let queries = series
            .iter()
            .enumerate()
            .map(|(i, dimensions)| {
                metric_query(&format!("q{i}"), namespace, name, "Maximum", 60, dimensions)
            })
            .collect();
        let doing = format!("GetMetricData {namespace} {name}");
        let values = self.fetch(&doing, queries, start, end).await?;
        Ok((0..series.len())
            .map(|i| {
                values
                    .get(&format!("q{i}"))
                    .and_then(|v| v.first().copied())
            })
            .collect())
    }

    /// Runs `queries` (at most 500 per call, the API's limit, following `NextToken`) and returns
    /// each query's values by id. A query that comes back incomplete, or not at all, is an
    /// error: counting it as zero would let a gate pass on data it never saw.
    async fn fetch(
        &self,
        doing: &str,
        queries: Vec<MetricDataQuery>,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<HashMap<String, Vec<f64>>, AwsError> {
        let mut values: HashMap<String, Vec<f64>> = HashMap::new();
        for chunk in queries.chunks(500) {
            let mut token: Option<String> = None;
            loop {
                let output = self
                    .client
                    .get_metric_data()
                    .start_time(DateTime::from(start))
                    .end_time(DateTime::from(end))
                    .set_metric_data_queries(Some(chunk.to_vec()))
                    // Newest first: `latest_maximums` takes the first value.
                    .scan_by(ScanBy::TimestampDescending)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk(doing, &e))?;
                for result in output.metric_data_results() {
                    let id = result.id().unwrap_or_default();
                    match result.status_code() {
                        Some(StatusCode::Complete) => {}
                        // More pages follow for this query.
                        Some(StatusCode::PartialData) if output.next_token().is_some() => {}
                        other => {
                            return Err(AwsError::new(format!(
                                "{doing}: query {id} came back {:?}",
                                other.map_or("without a status", |s| s.as_str())
                            )));
                        }
                    }
                    values
                        .entry(id.to_owned())
                        .or_default()
                        .extend_from_slice(result.values());
                }
                match output.next_token() {
                    Some(next) => token = Some(next.to_owned()),
                    None => break,
                }
            }
        }
        if let Some(missing) = queries
            .iter()
            .filter_map(|q| q.id())
            .find(|id| !values.contains_key(*id))
        {
            return Err(AwsError::new(format!(
                "{doing}: no result for query {missing}"
            )));
        }
        Ok(values)
    }

    /// Publishes `points` in `namespace`, each in its unit, in calls of at most 1,000 data points
    /// (the API's limit).
    pub async fn publish(&self, namespace: &str, points: &[MetricPoint]) -> Result<(), AwsError> {
        for chunk in points.chunks(1_000) {
            let data = chunk
                .iter()
                .map(|point| {
                    let dimensions = point
                        .dimensions
                        .iter()
                        .map(|(k, v)| Dimension::builder().name(*k).value(v).build())
                        .collect();
                    MetricDatum::builder()
                        .metric_name(point.name)
                        .set_dimensions(Some(dimensions))
                        .value(point.value)
                        .unit(StandardUnit::from(point.unit))
                        .build()
                })
                .collect();
            self.client
                .put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(data))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&format!("PutMetricData {namespace}"), &e))?;
        }
        Ok(())
    }
}

/// The longest window a gate may ask about: 30 days.
const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// Start, end and the one period covering `window` back from now. The end is a minute ahead:
/// Lambda publishes per minute, and the emulator truncates the end to seconds, so the current
/// minute and the last second count.
fn bounds(window: Duration) -> Result<(SystemTime, SystemTime, i32), AwsError> {
    if window > MAX_WINDOW {
        return Err(AwsError::new(format!(
            "a metrics window of {} minutes is longer than the 30 days CloudWatch is asked about",
            window.as_secs() / 60
        )));
    }
    let now = SystemTime::now();
    let start = now - window;
    let end = now + Duration::from_secs(60);
    let period = (window.as_secs().div_ceil(60).max(1) + 1) * 60;
    Ok((start, end, period as i32))
}

/// One `AWS/Lambda` statistic over one period, by these dimensions.
fn lambda_query(
    id: &str,
    metric: &str,
    stat: &str,
    period: i32,
    dimensions: &[(&str, String)],
) -> MetricDataQuery {
    metric_query(id, "AWS/Lambda", metric, stat, period, dimensions)
}

/// One statistic of a metric over one period, by these dimensions.
fn metric_query(
    id: &str,
    namespace: &str,
    metric: &str,
    stat: &str,
    period: i32,
    dimensions: &[(&str, String)],
) -> MetricDataQuery {
    let dimensions = dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(*name).value(value).build())
        .collect();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(namespace)
                        .metric_name(metric)
                        .set_dimensions(Some(dimensions))
                        .build(),
                )
                .period(period)
                .stat(stat)
                .build(),
        )
        .return_data(true)
        .build()
}

impl HealthSignals for CloudWatchAdapter {
    async fn version_metrics(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        window: Duration,
    ) -> Result<VersionMetrics, DecisionError> {
        CloudWatchAdapter::version_metrics(self, function, alias, version, window)
            .await
            .map_err(|e| DecisionError::Metrics(e.message))
    }
}
