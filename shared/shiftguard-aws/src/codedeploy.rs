//! CodeDeploy: what a deployment moves (from its AppSpec), and reporting a lifecycle hook's status.

use aws_sdk_codedeploy::Client;
use aws_sdk_codedeploy::types::{DeploymentStatus, LifecycleEventStatus};
use shiftguard_core::release::DecisionError;
use shiftguard_core::release::appspec::{LambdaTarget, parse_appspec};
use shiftguard_core::release::hold::Hold;
use shiftguard_core::release::ports::Deployments;

use crate::error::AwsError;
use crate::holds::DynamoHolds;

/// A hook's outcome, as CodeDeploy takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookStatus {
    Succeeded,
    Failed,
}

/// CodeDeploy calls on behalf of a hook, and the operators' holds when a table keeps them.
#[derive(Clone, Debug)]
pub struct CodeDeployAdapter {
    client: Client,
    holds: Option<DynamoHolds>,
}

impl CodeDeployAdapter {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        CodeDeployAdapter {
            client: Client::new(config),
            holds: None,
        }
    }

    /// The same adapter, reading holds from `holds`.
    pub fn with_holds(self, holds: DynamoHolds) -> Self {
        CodeDeployAdapter {
            holds: Some(holds),
            ..self
        }
    }

    /// Whether CodeDeploy knows the deployment group `application/group`.
    pub async fn deployment_group_exists(
        &self,
        application: &str,
        group: &str,
    ) -> Result<bool, AwsError> {
        let found = self
            .client
            .get_deployment_group()
            .application_name(application)
            .deployment_group_name(group)
            .send()
            .await;
        match found {
            Ok(_) => Ok(true),
            Err(error)
                if error.as_service_error().is_some_and(|e| {
                    e.is_application_does_not_exist_exception()
                        || e.is_deployment_group_does_not_exist_exception()
                }) =>
            {
                Ok(false)
            }
            Err(error) => Err(AwsError::from_sdk(
                &format!("GetDeploymentGroup {application}/{group}"),
                &error,
            )),
        }
    }

    /// The deployments of a deployment group that have not finished (created, queued, in
    /// progress, or ready), newest first as CodeDeploy lists them.
    pub async fn active_deployments(
        &self,
        application: &str,
        deployment_group: &str,
    ) -> Result<Vec<String>, AwsError> {
        let doing = format!("ListDeployments {application}/{deployment_group}");
        let mut ids = Vec::new();
        let mut token = None;
        loop {
            let output = self
                .client
                .list_deployments()
                .application_name(application)
                .deployment_group_name(deployment_group)
                .include_only_statuses(DeploymentStatus::Created)
                .include_only_statuses(DeploymentStatus::Queued)
                .include_only_statuses(DeploymentStatus::InProgress)
                .include_only_statuses(DeploymentStatus::Ready)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&doing, &e))?;
            ids.extend(output.deployments().iter().cloned());
            token = output.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(ids);
            }
        }
    }

    /// `PutLifecycleEventHookExecutionStatus`. The SDK retries throttling and transient failures.
    /// A hook execution that already has a status (the event delivered twice) is
    /// [`DecisionError::DuplicateDelivery`], known from the service's error code.
    pub async fn report(
        &self,
        deployment_id: &str,
        execution_id: &str,
        status: HookStatus,
    ) -> Result<(), DecisionError> {
        let status = match status {
            HookStatus::Succeeded => LifecycleEventStatus::Succeeded,
            HookStatus::Failed => LifecycleEventStatus::Failed,
        };
        self.client
            .put_lifecycle_event_hook_execution_status()
            .deployment_id(deployment_id)
            .lifecycle_event_hook_execution_id(execution_id)
            .status(status)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let duplicate = e.as_service_error().is_some_and(|e| {
                    e.is_invalid_lifecycle_event_hook_execution_status_exception()
                });
                let doing = format!("PutLifecycleEventHookExecutionStatus {deployment_id}");
                let message = AwsError::from_sdk(&doing, &e).message;
                if duplicate {
                    DecisionError::DuplicateDelivery(message)
                } else {
                    DecisionError::Deployment(message)
                }
            })
    }
}

impl CodeDeployAdapter {
    async fn deployment(
        &self,
        deployment_id: &str,
    ) -> Result<aws_sdk_codedeploy::operation::get_deployment::GetDeploymentOutput, DecisionError>
    {
        let doing = format!("GetDeployment {deployment_id}");
        self.client
            .get_deployment()
            .deployment_id(deployment_id)
            .send()
            .await
            .map_err(|e| {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|e| e.is_deployment_does_not_exist_exception());
                let message = AwsError::from_sdk(&doing, &e).message;
                if not_found {
                    DecisionError::DeploymentNotFound(message)
                } else {
                    DecisionError::Deployment(message)
                }
            })
    }
}

impl Deployments for CodeDeployAdapter {
    /// The Lambda function, alias and versions a deployment moves, from its AppSpec content
    /// (`appSpecContent`, or a legacy `string` revision).
    async fn lambda_target(&self, deployment_id: &str) -> Result<LambdaTarget, DecisionError> {
        let doing = format!("GetDeployment {deployment_id}");
        let output = self.deployment(deployment_id).await?;
        let revision = output
            .deployment_info()
            .and_then(|info| info.revision())
            .ok_or_else(|| {
                DecisionError::AppSpec(format!("{doing}: the deployment has no revision"))
            })?;
        let content = revision
            .app_spec_content()
            .and_then(|c| c.content())
            .or_else(|| revision.string().and_then(|s| s.content()))
            .ok_or_else(|| {
                DecisionError::AppSpec(format!("{doing}: the revision carries no AppSpec content"))
            })?;
        parse_appspec(content).map_err(|e| DecisionError::AppSpec(format!("{doing}: {e}")))
    }

    async fn active_deployments(
        &self,
        application: &str,
        group: &str,
    ) -> Result<Vec<String>, DecisionError> {
        CodeDeployAdapter::active_deployments(self, application, group)
            .await
            .map_err(|e| DecisionError::Deployment(e.message))
    }

    async fn group_holds(
        &self,
        application: &str,
        group: &str,
    ) -> Result<Vec<Hold>, DecisionError> {
        let Some(holds) = &self.holds else {
            return Ok(Vec::new());
        };
        holds
            .get(&format!("{application}/{group}"))
            .await
            .map_err(|e| DecisionError::Deployment(e.message))
    }

    /// The deployment's group from `GetDeployment`, then its holds (no call without a table).
    async fn deployment_holds(&self, deployment_id: &str) -> Result<Vec<Hold>, DecisionError> {
        if self.holds.is_none() {
            return Ok(Vec::new());
        }
        let output = self.deployment(deployment_id).await?;
        let info = output.deployment_info();
        let (Some(application), Some(group)) = (
            info.and_then(|i| i.application_name()),
            info.and_then(|i| i.deployment_group_name()),
        ) else {
            return Err(DecisionError::Deployment(format!(
                "GetDeployment {deployment_id}: no application or deployment group"
            )));
        };
        self.group_holds(application, group).await
    }
}
