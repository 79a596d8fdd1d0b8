#![allow(clippy::unwrap_used)]

use super::*;
use serde_yaml::Value;

/// Secrets are arbitrary text: every character YAML gives a meaning to, and values that would
/// read as other types if they were left bare.
const AWKWARD_SECRETS: &[&str] = &[
    "plain-Secret_123",
    "it's a \"quoted\" secret",
    "key: value # not a comment",
    "#starts-with-hash",
    "'single",
    "- looks like a list",
    "{flow: map}, [seq]",
    "&anchor *alias !tag |pipe >fold %dir @at `tick",
    "yes",
    "0600",
    "1e3",
    "null",
    "~",
    " leading and trailing spaces ",
    "back\\slash and tab\there",
    "ünïcødé ✓",
];

fn cred(secret: &str, region: Option<&str>) -> GuestCredential {
    GuestCredential {
        auth_url: "http://keystone.example:5000/v3".into(),
        // All digits: must stay a string.
        application_credential_id: "0123456789".into(),
        application_credential_secret: secret.into(),
        project_id: "p1".into(),
        region: region.map(Into::into),
    }
}

fn cloud(clouds_yaml: &str) -> Value {
    let doc: Value = serde_yaml::from_str(clouds_yaml).unwrap();
    let clouds = doc["clouds"].as_mapping().unwrap();
    assert_eq!(clouds.len(), 1, "{clouds_yaml}");
    doc["clouds"][CLOUD_NAME].clone()
}

#[test]
fn clouds_yaml_holds_the_exact_credential() {
    for secret in AWKWARD_SECRETS {
        let text = render_clouds_yaml(&cred(secret, Some("RegionOne"))).unwrap();
        let text = text.as_str();
        let yun = cloud(text);
        assert_eq!(yun["auth_type"].as_str(), Some("v3applicationcredential"));
        assert_eq!(
            yun["auth"]["auth_url"].as_str(),
            Some("http://keystone.example:5000/v3")
        );
        assert_eq!(
            yun["auth"]["application_credential_id"].as_str(),
            Some("0123456789"),
            "{text}"
        );
        assert_eq!(
            yun["auth"]["application_credential_secret"].as_str(),
            Some(*secret),
            "{text}"
        );
        assert_eq!(yun["region_name"].as_str(), Some("RegionOne"));
        assert_eq!(yun["identity_api_version"].as_u64(), Some(3));
    }
}

#[test]
fn region_is_left_out_when_unset() {
    let yun = cloud(&render_clouds_yaml(&cred("s", None)).unwrap());
    assert!(yun.get("region_name").is_none(), "{yun:?}");
}

#[test]
fn vendor_data_writes_clouds_yaml_root_only() {
    for secret in AWKWARD_SECRETS {
        let seed = render(&cred(secret, None), 4).unwrap();
        assert_eq!(seed.generation, 4);
        assert!(seed.vendor_data.starts_with("#cloud-config\n"));
        let doc: Value = serde_yaml::from_str(&seed.vendor_data).unwrap();
        let files = doc["write_files"].as_sequence().unwrap();
        assert_eq!(files.len(), 1);
        let file = &files[0];
        assert_eq!(file["path"].as_str(), Some("/etc/openstack/clouds.yaml"));
        // A string: cloud-init reads an integer 600 as decimal.
        assert_eq!(file["permissions"].as_str(), Some("0600"));
        assert_eq!(file["owner"].as_str(), Some("root:root"));
        let content = file["content"].as_str().unwrap();
        assert_eq!(content, seed.clouds_yaml.as_str());
        assert_eq!(
            cloud(content)["auth"]["application_credential_secret"].as_str(),
            Some(*secret)
        );
        assert_eq!(
            doc["bootcmd"],
            Value::Sequence(vec![REFRESH_SCRIPT.into()]),
            "the refresh runs at every boot"
        );
    }
}

#[test]
fn debug_never_shows_the_files() {
    let seed = render(&cred("very-secret-value", None), 1).unwrap();
    let shown = format!("{seed:?}");
    assert!(!shown.contains("very-secret-value"), "{shown}");
    assert!(shown.contains("generation: 1"), "{shown}");
}

#[test]
fn refresh_script_matches_the_seed_layout_and_parses() {
    assert!(REFRESH_SCRIPT.contains(&format!("$yun_mnt/{SEED_CLOUDS_FILE}")));
    assert!(REFRESH_SCRIPT.contains(&format!(
        "/etc/openstack/.clouds.yaml.yun {GUEST_CLOUDS_YAML}"
    )));
    let out = std::process::Command::new("sh")
        .args(["-n", "-c", REFRESH_SCRIPT])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
