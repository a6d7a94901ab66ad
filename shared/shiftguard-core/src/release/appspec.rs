//! The CodeDeploy AppSpec of a Lambda deployment (YAML or JSON): which function and alias move,
//! from which version to which. The hook event does not say; `GetDeployment` returns this text.

use serde_json::Value;
use thiserror::Error;

/// The Lambda deployment an AppSpec describes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LambdaTarget {
    pub function: String,
    pub alias: String,
    pub current_version: String,
    pub target_version: String,
}

/// An AppSpec that does not describe exactly one Lambda deployment.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("AppSpec: {0}")]
pub struct AppSpecError(String);

/// Parses the AppSpec content (YAML, of which JSON is a subset).
pub fn parse_appspec(content: &str) -> Result<LambdaTarget, AppSpecError> {
    let error = |message: &str| AppSpecError(message.to_owned());
    let document: Value = serde_json::from_str(content)
        .or_else(|_| serde_saphyr::from_str(content))
        .map_err(|e| AppSpecError(format!("not YAML or JSON: {}", first_line(&e.to_string()))))?;
    let field = |value: &Value, name: &str| -> Option<Value> {
        let object = value.as_object()?;
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let resources = field(&document, "Resources").ok_or_else(|| error("no Resources"))?;
    let resources = resources
        .as_array()
        .ok_or_else(|| error("Resources is not a list"))?;
    let mut lambdas = Vec::new();
    for entry in resources {
        let Some(object) = entry.as_object() else {
            return Err(error("a Resources entry is not a mapping"));
        };
        for (name, resource) in object {
            let kind = field(resource, "Type").and_then(|t| t.as_str().map(str::to_owned));
            if kind.as_deref() == Some("AWS::Lambda::Function") {
                lambdas.push((name.clone(), resource.clone()));
            }
        }
    }
    let (name, resource) = match lambdas.as_slice() {
        [one] => one,
        [] => return Err(error("no resource of Type AWS::Lambda::Function")),
        _ => return Err(error("more than one AWS::Lambda::Function resource")),
    };
    let properties = field(resource, "Properties")
        .ok_or_else(|| AppSpecError(format!("resource {name} has no Properties")))?;
    let text = |key: &str| -> Result<String, AppSpecError> {
        match field(&properties, key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            // YAML writes versions as numbers.
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(AppSpecError(format!(
                "resource {name} has no Properties.{key}"
            ))),
        }
    };
    Ok(LambdaTarget {
        function: text("Name")?,
        alias: text("Alias")?,
        current_version: text("CurrentVersion")?,
        target_version: text("TargetVersion")?,
    })
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_appspecs() {
        let yaml = "version: 0.0\nResources:\n  - myFunction:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: users-api\n        Alias: live\n        CurrentVersion: 3\n        TargetVersion: \"4\"\nHooks:\n  - BeforeAllowTraffic: CodeDeployHook_pre\n";
        let json = r#"{"version":0.0,"Resources":[{"UsersApi":{"Type":"AWS::Lambda::Function","Properties":{"Name":"users-api","Alias":"live","CurrentVersion":"3","TargetVersion":"4"}}}]}"#;
        for content in [yaml, json] {
            assert_eq!(
                parse_appspec(content),
                Ok(LambdaTarget {
                    function: "users-api".into(),
                    alias: "live".into(),
                    current_version: "3".into(),
                    target_version: "4".into(),
                })
            );
        }
    }

    #[test]
    fn what_is_not_one_lambda_deployment_is_refused() {
        let cases = [
            ("", "AppSpec: no Resources"),
            ("[1, 2", "AppSpec: not YAML or JSON"),
            (
                "Resources: []",
                "AppSpec: no resource of Type AWS::Lambda::Function",
            ),
            (
                "Resources:\n  - f:\n      Type: AWS::Lambda::Function\n      Properties: {Name: a, Alias: live, CurrentVersion: 1}",
                "AppSpec: resource f has no Properties.TargetVersion",
            ),
            (
                "Resources:\n  - f:\n      Type: AWS::ECS::Service\n",
                "AppSpec: no resource of Type AWS::Lambda::Function",
            ),
        ];
        for (content, expected) in cases {
            let error = parse_appspec(content).expect_err(content).to_string();
            assert!(error.starts_with(expected), "{content:?}: {error}");
        }
    }
}
