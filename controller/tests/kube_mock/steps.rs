//! Steps shared by the scenarios: the setup, and the assertions on a status apply.

use crate::support::apiserver::{Captured, MockApiServer, assert_status_apply};
use crate::support::fleet::{TestFleet, start_fleet};
use crate::support::{IMAGE, NAMESPACE, ctx, host, image};
use http::StatusCode;
use kube::runtime::controller::Action;
use serde_json::Value;
use std::sync::Arc;
use yun_controller::kube_source::{Ctx, KubeSourceError, reconcile};
use yun_crds::{VirtualMachine, VirtualMachineStatus};

pub const UID: &str = "6f1c2a3b-0000-4000-8000-000000000001";
pub const VM_PATH: &str = "/apis/yun.dev/v1alpha1/namespaces/default/virtualmachines/web";
pub const STATUS_PATH: &str =
    "/apis/yun.dev/v1alpha1/namespaces/default/virtualmachines/web/status";

/// h1 fits; h2 is bigger (spreading would choose it) but cordoned in the Host cache.
pub async fn setup() -> (
    TestFleet,
    MockApiServer,
    Arc<Ctx>,
    prometheus_client::registry::Registry,
) {
    let fleet = start_fleet(&[("h1", 8, 4096), ("h2", 32, 65536)]).await;
    let (client, server) = MockApiServer::start();
    let (ctx, registry) = ctx(
        client,
        fleet.bus.clone(),
        vec![image(IMAGE, NAMESPACE), image(IMAGE, "other")],
        vec![host("h1", false), host("h2", true)],
    );
    (fleet, server, ctx, registry)
}

pub fn spawn_reconcile(
    vm: &VirtualMachine,
    ctx: &Arc<Ctx>,
) -> tokio::task::JoinHandle<Result<Action, KubeSourceError>> {
    tokio::spawn(reconcile(Arc::new(vm.clone()), ctx.clone()))
}

pub async fn finish(
    server: &mut MockApiServer,
    task: tokio::task::JoinHandle<Result<Action, KubeSourceError>>,
) -> Result<Action, KubeSourceError> {
    server.finish(task).await.unwrap()
}

/// Asserts `req` is the server-side apply of a VM's status by this controller, answers it as
/// the API server would (the object with the new status) and returns the object.
pub fn expect_status_apply(req: Captured, mut vm: VirtualMachine) -> VirtualMachine {
    assert_status_apply(&req, STATUS_PATH, "VirtualMachine");
    let status: VirtualMachineStatus = serde_json::from_value(req.body["status"].clone()).unwrap();
    vm.status = Some(status);
    req.respond(StatusCode::OK, &vm);
    vm
}

pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

pub fn status_json(vm: &VirtualMachine) -> Value {
    serde_json::to_value(vm.status.as_ref().unwrap()).unwrap()
}
