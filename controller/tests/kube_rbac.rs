//! The ClusterRole in `deploy/rbac.yaml` as the scripted API server enforces it: the mapping of
//! requests to RBAC attributes, the rule check, and a forbidden request answered 403 and
//! failing the test.
#![allow(clippy::unwrap_used)]

mod support;

use http::Method;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use std::collections::BTreeMap;
use support::apiserver::MockApiServer;
use support::rbac::{self, Attributes, PolicyRule};
use yun_crds::Host;

fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn attrs(method: Method, path: &str, query: &[(&str, &str)]) -> Attributes {
    rbac::attributes(&method, path, &q(query)).unwrap()
}

/// (verb, group, resource/subresource, namespace, name)
fn summary(a: &Attributes) -> (String, String, String, Option<String>, Option<String>) {
    (
        a.verb.clone(),
        a.group.clone(),
        a.rbac_resource(),
        a.namespace.clone(),
        a.name.clone(),
    )
}

fn s(v: &str) -> String {
    v.to_owned()
}

#[test]
fn requests_map_to_verbs_and_resources_as_the_api_server_maps_them() {
    let cases = [
        (
            attrs(Method::GET, "/apis/yun.dev/v1alpha1/virtualmachines", &[]),
            (s("list"), s("yun.dev"), s("virtualmachines"), None, None),
        ),
        (
            attrs(
                Method::GET,
                "/apis/yun.dev/v1alpha1/virtualmachines",
                &[("watch", "true"), ("resourceVersion", "10")],
            ),
            (s("watch"), s("yun.dev"), s("virtualmachines"), None, None),
        ),
        (
            attrs(
                Method::GET,
                "/apis/yun.dev/v1alpha1/hosts",
                &[("watch", "1")],
            ),
            (s("watch"), s("yun.dev"), s("hosts"), None, None),
        ),
        (
            attrs(Method::GET, "/apis/yun.dev/v1alpha1/watch/hosts", &[]),
            (s("watch"), s("yun.dev"), s("hosts"), None, None),
        ),
        (
            attrs(Method::GET, "/api/v1/namespaces/default/secrets/chap", &[]),
            (
                s("get"),
                s(""),
                s("secrets"),
                Some(s("default")),
                Some(s("chap")),
            ),
        ),
        (
            attrs(
                Method::PATCH,
                "/apis/yun.dev/v1alpha1/namespaces/default/virtualmachines/web/status",
                &[("fieldManager", "yun-controller"), ("force", "true")],
            ),
            (
                s("patch"),
                s("yun.dev"),
                s("virtualmachines/status"),
                Some(s("default")),
                Some(s("web")),
            ),
        ),
        (
            attrs(Method::POST, "/apis/yun.dev/v1alpha1/hosts", &[]),
            (s("create"), s("yun.dev"), s("hosts"), None, None),
        ),
        (
            attrs(Method::PUT, "/apis/yun.dev/v1alpha1/hosts/h1", &[]),
            (s("update"), s("yun.dev"), s("hosts"), None, Some(s("h1"))),
        ),
        (
            attrs(Method::DELETE, "/apis/yun.dev/v1alpha1/hosts/h1", &[]),
            (s("delete"), s("yun.dev"), s("hosts"), None, Some(s("h1"))),
        ),
        (
            attrs(Method::DELETE, "/api/v1/namespaces/default/secrets", &[]),
            (
                s("deletecollection"),
                s(""),
                s("secrets"),
                Some(s("default")),
                None,
            ),
        ),
        (
            attrs(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events",
                &[],
            ),
            (
                s("create"),
                s("events.k8s.io"),
                s("events"),
                Some(s("default")),
                None,
            ),
        ),
        // A namespace's own path and its subresources are the namespace object.
        (
            attrs(Method::GET, "/api/v1/namespaces/default", &[]),
            (s("get"), s(""), s("namespaces"), None, Some(s("default"))),
        ),
        (
            attrs(Method::PUT, "/api/v1/namespaces/default/finalize", &[]),
            (
                s("update"),
                s(""),
                s("namespaces/finalize"),
                None,
                Some(s("default")),
            ),
        ),
        (
            attrs(Method::GET, "/api/v1/namespaces", &[]),
            (s("list"), s(""), s("namespaces"), None, None),
        ),
    ];
    for (got, want) in cases {
        assert_eq!(summary(&got), want);
    }
    assert_eq!(rbac::attributes(&Method::GET, "/version", &q(&[])), None);
    assert_eq!(rbac::attributes(&Method::GET, "/apis", &q(&[])), None);
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let v = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect();
    PolicyRule {
        api_groups: v(groups),
        resources: v(resources),
        verbs: v(verbs),
        resource_names: Vec::new(),
    }
}

#[test]
fn the_check_allows_only_what_a_rule_names() {
    let rules = [
        rule(
            &["yun.dev"],
            &["virtualmachines"],
            &["list", "watch", "patch"],
        ),
        rule(&["yun.dev"], &["virtualmachines/status"], &["patch"]),
        rule(&[""], &["secrets"], &["get"]),
    ];
    let check = |m: Method, path: &str, query: &[(&str, &str)]| {
        rbac::authorize_with(&rules, &m, path, &q(query))
    };
    let vms = "/apis/yun.dev/v1alpha1/virtualmachines";
    let vm = "/apis/yun.dev/v1alpha1/namespaces/default/virtualmachines/web";
    // Allowed.
    check(Method::GET, vms, &[]).unwrap();
    check(Method::GET, vms, &[("watch", "true")]).unwrap();
    check(Method::PATCH, vm, &[]).unwrap();
    check(Method::PATCH, &format!("{vm}/status"), &[]).unwrap();
    check(Method::GET, "/api/v1/namespaces/ns/secrets/chap", &[]).unwrap();
    // A missing verb.
    let denied = check(Method::DELETE, vm, &[]).unwrap_err();
    assert_eq!(
        denied.message,
        "virtualmachines.yun.dev \"web\" is forbidden: User \
         \"system:serviceaccount:yun-system:yun-controller\" cannot delete resource \
         \"virtualmachines\" in API group \"yun.dev\" in the namespace \"default\" \
         (ClusterRole yun-controller in deploy/rbac.yaml)"
    );
    check(Method::GET, vm, &[]).unwrap_err();
    check(Method::GET, "/api/v1/namespaces/ns/secrets", &[]).unwrap_err();
    // A missing resource, and the same name in another group.
    let denied = check(Method::GET, "/apis/yun.dev/v1alpha1/hosts", &[]).unwrap_err();
    assert!(
        denied.message.contains(
            "cannot list resource \"hosts\" in API group \"yun.dev\" at the cluster scope"
        ),
        "{denied}"
    );
    check(Method::GET, "/apis/other.dev/v1/virtualmachines", &[]).unwrap_err();
    // A subresource needs its own rule: `secrets` does not grant `secrets/status`, nor
    // `virtualmachines/status` a patch of the VM itself.
    let denied = check(
        Method::GET,
        "/api/v1/namespaces/ns/secrets/chap/status",
        &[],
    )
    .unwrap_err();
    assert!(
        denied
            .message
            .contains("cannot get resource \"secrets/status\" in API group \"\""),
        "{denied}"
    );
    let only_status = [rule(&["yun.dev"], &["virtualmachines/status"], &["patch"])];
    rbac::authorize_with(&only_status, &Method::PATCH, vm, &q(&[])).unwrap_err();
    // Non-resource URLs are never granted by this role.
    check(Method::GET, "/version", &[]).unwrap_err();
    // resourceNames restrict a rule to those objects (and so never allow a list).
    let named = [PolicyRule {
        resource_names: vec!["chap".into()],
        ..rule(&[""], &["secrets"], &["get", "list"])
    }];
    let named_check = |path: &str| rbac::authorize_with(&named, &Method::GET, path, &q(&[]));
    named_check("/api/v1/namespaces/ns/secrets/chap").unwrap();
    named_check("/api/v1/namespaces/ns/secrets/other").unwrap_err();
    named_check("/api/v1/namespaces/ns/secrets").unwrap_err();
}

#[test]
fn the_deployed_role_is_bound_to_the_service_account_and_grants_no_wildcard() {
    let rules = rbac::deployed_rules();
    assert!(!rules.is_empty());
    for r in rules {
        for field in [&r.api_groups, &r.resources, &r.verbs] {
            assert!(!field.iter().any(|x| x.contains('*')), "{r:?}");
        }
    }
    let unbound = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
                   metadata: {name: yun-controller}\nrules: []\n";
    assert!(rbac::cluster_role_rules(unbound).is_err());
}

#[test]
fn the_deployed_role_grants_what_kubernetes_mode_does_and_no_more() {
    let ok = |m: Method, path: &str, query: &[(&str, &str)]| {
        rbac::authorize(&m, path, &q(query)).unwrap_or_else(|d| panic!("{d}"));
    };
    let no = |m: Method, path: &str| {
        rbac::authorize(&m, path, &q(&[])).unwrap_err();
    };
    ok(
        Method::GET,
        "/apis/yun.dev/v1alpha1/deviceidentities",
        &[("watch", "true")],
    );
    ok(
        Method::PATCH,
        "/apis/yun.dev/v1alpha1/namespaces/ns/deviceidentities/d/status",
        &[],
    );
    ok(Method::POST, "/apis/yun.dev/v1alpha1/hosts", &[]);
    ok(Method::PATCH, "/apis/yun.dev/v1alpha1/hosts/h1/status", &[]);
    ok(
        Method::DELETE,
        "/api/v1/namespaces/ns/secrets/d-keystone",
        &[],
    );
    ok(
        Method::PATCH,
        "/apis/events.k8s.io/v1/namespaces/ns/events/e",
        &[],
    );
    // Host objects are never deleted nor edited by the controller; no Secret is listed.
    no(Method::DELETE, "/apis/yun.dev/v1alpha1/hosts/h1");
    no(Method::PATCH, "/apis/yun.dev/v1alpha1/hosts/h1");
    no(
        Method::PATCH,
        "/apis/yun.dev/v1alpha1/namespaces/ns/vmimages/tiny",
    );
    no(Method::GET, "/api/v1/secrets");
    no(Method::POST, "/api/v1/namespaces/ns/events");
    // A server-side apply that may create a Secret needs create too, which the role grants.
    rbac::authorize_apply_create(
        &Method::PATCH,
        "/api/v1/namespaces/ns/secrets/d-keystone",
        &q(&[]),
        "application/apply-patch+yaml",
    )
    .unwrap();
}

/// Deletes Host `h1`, which the role does not allow.
async fn delete_host(client: kube::Client) -> Result<(), kube::Error> {
    Api::<Host>::all(client)
        .delete("h1", &DeleteParams::default())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_request_outside_the_role_is_answered_403() {
    let (client, mut server) = MockApiServer::start();
    let task = tokio::spawn(delete_host(client));
    let denied = server.receive_checked().await.unwrap().unwrap_err();
    assert_eq!(
        denied
            .attributes
            .as_ref()
            .map(|a| (a.verb.as_str(), a.rbac_resource())),
        Some(("delete", "hosts".to_owned()))
    );
    let err = task.await.unwrap().unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(
        status.message.contains(
            "cannot delete resource \"hosts\" in API group \"yun.dev\" at the cluster scope"
        ),
        "{}",
        status.message
    );
    // The test saw the denial; otherwise dropping the server fails it.
    assert_eq!(server.take_denials().len(), 1);
}

#[tokio::test]
#[should_panic(
    expected = "its ClusterRole forbids (answered 403): hosts.yun.dev \"h1\" is forbidden"
)]
async fn a_forbidden_request_fails_the_test_that_reads_it() {
    let (client, mut server) = MockApiServer::start();
    let _task = tokio::spawn(delete_host(client));
    let _ = server.next().await;
}

#[tokio::test]
#[should_panic(expected = "cannot list resource \"secrets\"")]
async fn a_forbidden_request_no_one_reads_fails_the_test_when_the_server_drops() {
    let (client, server) = MockApiServer::start();
    // A background task (a watcher, say) whose request the script never reads.
    let task = tokio::spawn(async move {
        let _ = Api::<k8s_openapi::api::core::v1::Secret>::all(client)
            .list(&ListParams::default())
            .await;
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(server);
    let _ = task.await;
}
