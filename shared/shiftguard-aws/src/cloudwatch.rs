//! CloudWatch: a version's traffic on an alias over a window (namespace `AWS/Lambda`, dimensions
//! `FunctionName`, `Resource` = `function:alias`, `ExecutedVersion`).

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, StandardUnit,
};
use shiftguard_core::gate::VersionMetrics;

use crate::error::AwsError;

/// One value to publish: metric name, dimensions, value (a count).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub name: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    pub value: f64,
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
        // One period covering the window, in whole minutes as CloudWatch wants.
        let period = (window.as_secs().div_ceil(60).max(1) * 60) as i32;
        // Lambda publishes per minute; an end a minute ahead takes in the current minute (and the
        // data points of the last second, which an end of "now" truncated to seconds would miss).
        let end = SystemTime::now() + Duration::from_secs(60);
        let start = end - Duration::from_secs(period as u64);
        let query = |id: &str, metric: &str, stat: &str| {
            let dimensions = [
                ("FunctionName", function.to_owned()),
                ("Resource", format!("{function}:{alias}")),
                ("ExecutedVersion", version.to_owned()),
            ]
            .into_iter()
            .map(|(name, value)| Dimension::builder().name(name).value(value).build());
            MetricDataQuery::builder()
                .id(id)
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace("AWS/Lambda")
                                .metric_name(metric)
                                .set_dimensions(Some(dimensions.collect()))
                                .build(),
                        )
                        .period(period)
                        .stat(stat)
                        .build(),
                )
                .return_data(true)
                .build()
        };
        let doing = format!("GetMetricData {function}:{alias} version {version}");
        let output = self
            .client
            .get_metric_data()
            .start_time(DateTime::from(start))
            .end_time(DateTime::from(end))
            .metric_data_queries(query("invocations", "Invocations", "Sum"))
            .metric_data_queries(query("errors", "Errors", "Sum"))
            .metric_data_queries(query("p95", "Duration", "p95"))
            .metric_data_queries(query("p99", "Duration", "p99"))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&doing, &e))?;
        let values = |id: &str| -> Vec<f64> {
            output
                .metric_data_results()
                .iter()
                .find(|r| r.id() == Some(id))
                .map(|r| r.values().to_vec())
                .unwrap_or_default()
        };
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
        let period = (window.as_secs().div_ceil(60).max(1) * 60) as i32;
        let end = SystemTime::now() + Duration::from_secs(60);
        let start = end - Duration::from_secs(period as u64);
        // (query id, version index, dimensions)
        let mut queries = Vec::new();
        for (index, version) in versions.iter().enumerate() {
            let mut resources: Vec<(String, Option<&str>)> = aliases
                .iter()
                .map(|alias| (format!("{function}:{alias}"), Some(version.as_str())))
                .collect();
            resources.push((format!("{function}:{version}"), None));
            for (resource, executed) in resources {
                let mut dimensions = vec![
                    Dimension::builder()
                        .name("FunctionName")
                        .value(function)
                        .build(),
                    Dimension::builder()
                        .name("Resource")
                        .value(resource)
                        .build(),
                ];
                if let Some(executed) = executed {
                    dimensions.push(
                        Dimension::builder()
                            .name("ExecutedVersion")
                            .value(executed)
                            .build(),
                    );
                }
                let query = MetricDataQuery::builder()
                    .id(format!("q{}", queries.len()))
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace("AWS/Lambda")
                                    .metric_name("Invocations")
                                    .set_dimensions(Some(dimensions))
                                    .build(),
                            )
                            .period(period)
                            .stat("Sum")
                            .build(),
                    )
                    .return_data(true)
                    .build();
                queries.push((index, query));
            }
        }
        let mut counts = vec![0.0; versions.len()];
        for chunk in queries.chunks(500) {
            let output = self
                .client
                .get_metric_data()
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(end))
                .set_metric_data_queries(Some(chunk.iter().map(|(_, q)| q.clone()).collect()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&format!("GetMetricData {function}"), &e))?;
            for (index, query) in chunk {
                let sum: f64 = output
                    .metric_data_results()
                    .iter()
                    .filter(|r| r.id() == query.id())
                    .flat_map(|r| r.values())
                    .fold(0.0, |a, b| a + b);
                counts[*index] += sum;
            }
        }
        Ok(versions.iter().cloned().zip(counts).collect())
    }

    /// Publishes `points` in `namespace`, as counts, in calls of at most 1,000 data points
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
                        .unit(StandardUnit::Count)
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
