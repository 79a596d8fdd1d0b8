//! `parse_manifests`: the bootstrap-mode entry point, and the example manifests.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use yun_crds::{
    DiskFormat, DocumentError, Manifest, PlacementPolicy, QosClass, RunStrategy, Topology,
    VmScheduling, parse_manifests,
};

const EXAMPLE_VM: &str = include_str!("../../examples/virtualmachine.yaml");
const EXAMPLE_INVALID_VM: &str = include_str!("../../examples/invalid-virtualmachine.yaml");
const EXAMPLE_IMAGE_TEMPLATE: &str = include_str!("../../examples/vmimage.yaml.in");

const SUM_A: &str = "9417fbe2284a0177f8d2fbc076a07aa73207644b0c3481f3c0ef9eef6d425391";
const SUM_B: &str = "51349501a3d1ff83836437d2b365fd2d57f2feb8642d315e5181dec23d4c3275";
const SUM_C: &str = "0c0dd53fe954ae51e44bf0cf002be96802d0a8ac8492942e91cbc31f3fe97ed9";

fn example_image() -> String {
    EXAMPLE_IMAGE_TEMPLATE
        .replace(
            "@DISK_SOURCE@",
            "file:///var/lib/yun/images/yun-test/disk.qcow2",
        )
        .replace("@DISK_SHA256@", SUM_A)
        .replace(
            "@KERNEL_SOURCE@",
            "file:///var/lib/yun/images/yun-test/vmlinuz",
        )
        .replace("@KERNEL_SHA256@", SUM_B)
        .replace(
            "@INITRD_SOURCE@",
            "file:///var/lib/yun/images/yun-test/initrd.img",
        )
        .replace("@INITRD_SHA256@", SUM_C)
}

/// The lines of the error, for assertions on individual problems.
fn problems(yaml: &str) -> Vec<String> {
    match parse_manifests(yaml) {
        Ok(m) => panic!("expected a refusal, parsed {m:?}"),
        Err(e) => {
            assert_eq!(e.to_string().lines().count(), e.problems.len());
            e.to_string().lines().map(str::to_owned).collect()
        }
    }
}

fn vm_doc(name: &str, spec_lines: &str) -> String {
    format!(
        "apiVersion: yun.dev/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: {name}\nspec:\n{spec_lines}"
    )
}

const GOOD_SPEC: &str = "  image: yun-test\n  cpu: 1\n  memoryMiB: 256\n";

#[test]
fn example_virtual_machine_parses() {
    let parsed = parse_manifests(EXAMPLE_VM).unwrap();
    let [Manifest::VirtualMachine(vm)] = parsed.as_slice() else {
        panic!("{parsed:?}")
    };
    assert_eq!(vm.metadata.name.as_deref(), Some("demo-vm"));
    assert_eq!(vm.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        (
            vm.spec.image.as_str(),
            vm.spec.cpu,
            vm.spec.memory_mib,
            vm.spec.disk_gib
        ),
        ("yun-test", 1, 256, 1)
    );
    assert_eq!(
        vm.spec.user_data.as_deref(),
        Some("#cloud-config\nyun-marker: hello-from-yun\n")
    );
    assert_eq!(vm.spec.run_strategy, RunStrategy::Always);
    assert_eq!(vm.hostname(), "demo-vm");
    assert_eq!(
        vm.spec.scheduling,
        Some(VmScheduling {
            qos_class: QosClass::Burstable,
            ..Default::default()
        })
    );
}

#[test]
fn example_commented_scheduling_fields_are_valid_when_uncommented() {
    let uncommented = EXAMPLE_VM.replace("\n    # ", "\n    ");
    assert_ne!(uncommented, EXAMPLE_VM);
    let parsed = parse_manifests(&uncommented).unwrap();
    let [Manifest::VirtualMachine(vm)] = parsed.as_slice() else {
        panic!("{parsed:?}")
    };
    let s = vm.spec.scheduling.as_ref().unwrap();
    assert_eq!(s.anti_affinity_group.as_deref(), Some("demo"));
    assert_eq!(s.affinity_group.as_deref(), Some("cache"));
    assert_eq!(s.policy, Some(PlacementPolicy::Spread));
    let spread = s.spread.as_ref().unwrap();
    assert_eq!(
        (spread.group.as_str(), spread.topology, spread.max_skew),
        ("demo", Topology::Rack, 1)
    );
}

#[test]
fn example_invalid_virtual_machine_is_refused_naming_cpu() {
    assert_eq!(
        problems(EXAMPLE_INVALID_VM),
        [
            "document 1 (VirtualMachine default/broken-vm): spec.cpu: must be between 1 and 256, got 0"
        ]
    );
}

#[test]
fn example_image_template_parses_once_filled() {
    let parsed = parse_manifests(&example_image()).unwrap();
    let [Manifest::VmImage(img)] = parsed.as_slice() else {
        panic!("{parsed:?}")
    };
    assert_eq!(img.spec.os, "yun-test-busybox");
    assert_eq!(img.spec.disk.format, DiskFormat::Qcow2);
    assert_eq!(
        img.spec.kernel.as_ref().map(|k| k.sha256.as_str()),
        Some(SUM_B)
    );
    assert_eq!(
        img.spec.cmdline.as_deref(),
        Some("console=ttyS0 root=/dev/vda rw panic=-1")
    );
    // Unfilled placeholders are not valid sources or checksums.
    let lines = problems(EXAMPLE_IMAGE_TEMPLATE);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(lines[0].starts_with(
        "document 1 (VmImage default/yun-test): spec.disk.source: must be a file:/// URL"
    ));
}

#[test]
fn multi_document_stream_parses_in_order_and_defaults_namespace() {
    let yaml = format!(
        "---\n{}\n---\napiVersion: yun.dev/v1alpha1\nkind: Host\nmetadata:\n  name: rack1-n1\n  labels:\n    zone: a\nspec:\n  unschedulable: true\n---\n{}\n---\n",
        example_image(),
        vm_doc("web", GOOD_SPEC)
    );
    let parsed = parse_manifests(&yaml).unwrap();
    let kinds: Vec<_> = parsed
        .iter()
        .map(|m| (m.kind(), m.namespace(), m.name()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("VmImage", Some("default"), "yun-test"),
            ("Host", None, "rack1-n1"),
            ("VirtualMachine", Some("default"), "web")
        ]
    );
    let Manifest::Host(h) = &parsed[1] else {
        panic!()
    };
    assert!(h.spec.unschedulable);
    let Manifest::VirtualMachine(vm) = &parsed[2] else {
        panic!()
    };
    assert_eq!(vm.spec.disk_gib, 2, "diskGiB defaults to 2");
}

#[test]
fn errors_name_document_object_and_field() {
    let yaml = format!(
        "{}---\n{}",
        vm_doc("ok", GOOD_SPEC),
        vm_doc("web", "  image: yun-test\n  cpu: 1\n  memoryMiB: 8\n")
    );
    assert_eq!(
        problems(&yaml),
        [
            "document 2 (VirtualMachine default/web): spec.memoryMiB: must be between 64 and 4194304, got 8"
        ]
    );
}

#[test]
fn every_problem_of_every_document_is_reported() {
    let yaml = format!(
        "{}---\n{}",
        vm_doc(
            "a",
            "  image: yun-test\n  cpu: 0\n  memoryMiB: 8\n  diskGiB: 0\n"
        ),
        vm_doc("b", "  image: yun-test\n  cpu: 300\n  memoryMiB: 64\n")
    );
    let lines = problems(&yaml);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].starts_with("document 1 (VirtualMachine default/a): spec.cpu:"));
    assert!(lines[1].starts_with("document 1 (VirtualMachine default/a): spec.memoryMiB:"));
    assert!(lines[2].starts_with("document 1 (VirtualMachine default/a): spec.diskGiB:"));
    assert!(lines[3].starts_with("document 2 (VirtualMachine default/b): spec.cpu:"));
}

#[test]
fn unknown_spec_field_is_refused_with_path_and_line() {
    let lines = problems(&vm_doc(
        "web",
        "  image: yun-test\n  cpus: 1\n  memoryMiB: 256\n",
    ));
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert!(
        line.starts_with("document 1 (VirtualMachine default/web): spec: unknown field `cpus`"),
        "{line}"
    );
    assert!(line.contains("line 7"), "{line}");
}

#[test]
fn unknown_nested_field_is_refused() {
    let yaml = example_image().replace(
        "    format: qcow2\n",
        "    format: qcow2\n    compression: zstd\n",
    );
    let lines = problems(&yaml);
    assert!(
        lines[0].contains("spec.disk: unknown field `compression`"),
        "{lines:?}"
    );
}

#[test]
fn unknown_top_level_and_metadata_fields_are_refused() {
    let yaml = vm_doc("web", GOOD_SPEC)
        .replace("metadata:\n", "metdata: {}\nmetadata:\n  namepsace: prod\n");
    assert_eq!(
        problems(&yaml),
        [
            "document 1 (VirtualMachine default/web): metdata: unknown field",
            "document 1 (VirtualMachine default/web): metadata.namepsace: unknown field",
        ]
    );
}

#[test]
fn wrong_type_names_field_and_location() {
    let lines = problems(&vm_doc(
        "web",
        "  image: yun-test\n  cpu: many\n  memoryMiB: 256\n",
    ));
    assert!(
        lines[0].starts_with("document 1 (VirtualMachine default/web): spec.cpu: invalid type"),
        "{lines:?}"
    );
    assert!(lines[0].contains("line 7"), "{lines:?}");
    let lines = problems(&vm_doc("web", "  image: yun-test\n  memoryMiB: 256\n"));
    assert!(lines[0].contains("spec: missing field `cpu`"), "{lines:?}");
    let lines = problems(&vm_doc(
        "web",
        "  image: yun-test\n  cpu: 1\n  memoryMiB: 256\n  runStrategy: Sometimes\n",
    ));
    assert!(
        lines[0].contains("spec.runStrategy: unknown variant `Sometimes`"),
        "{lines:?}"
    );
}

#[test]
fn unknown_api_version_or_kind_is_refused() {
    let lines =
        problems("apiVersion: yun.dev/v1\nkind: VirtualMachine\nmetadata: {name: a}\nspec: {}\n");
    assert!(
        lines[0].starts_with(
            "document 1: unsupported apiVersion/kind \"yun.dev/v1\"/\"VirtualMachine\""
        ),
        "{lines:?}"
    );
    let lines = problems("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
    assert!(lines[0].contains("\"v1\"/\"ConfigMap\""), "{lines:?}");
    assert!(
        lines[0].ends_with(
            "(supported: yun.dev/v1alpha1 Host, VmImage, Network, SecurityGroup, Volume, VirtualMachine)"
        ),
        "{lines:?}"
    );
    let lines = problems("kind: Host\nmetadata: {name: a}\nspec: {}\n");
    assert_eq!(lines, ["document 1: apiVersion is missing or not a string"]);
    assert_eq!(
        problems("- just\n- a list\n"),
        ["document 1: expected an object with apiVersion, kind, metadata and spec"]
    );
}

#[test]
fn initrd_without_kernel_is_refused() {
    let start = example_image().find("  kernel:\n").unwrap();
    let end = example_image().find("  initrd:\n").unwrap();
    let without_kernel = format!("{}{}", &example_image()[..start], &example_image()[end..]);
    assert_eq!(
        problems(&without_kernel),
        [
            "document 1 (VmImage default/yun-test): spec.initrd: initrd requires kernel",
            "document 1 (VmImage default/yun-test): spec.cmdline: cmdline requires kernel",
        ]
    );
}

#[test]
fn names_and_namespaces_are_checked() {
    let host = "apiVersion: yun.dev/v1alpha1\nkind: Host\nmetadata:\n  name: node1.example.com\nspec: {}\n";
    let lines = problems(host);
    assert!(
        lines[0].starts_with(
            "document 1 (Host node1.example.com): metadata.name: must be a DNS-1123 label"
        ),
        "{lines:?}"
    );
    let namespaced_host = host.replace("node1.example.com", "node1\n  namespace: default");
    let parsed = parse_manifests(&namespaced_host).unwrap();
    assert_eq!(
        parsed[0].namespace(),
        None,
        "dropped, as the API server drops it"
    );
    let vm = vm_doc("web", GOOD_SPEC).replace("  name: web\n", "  name: web\n  namespace: Prod\n");
    assert!(
        problems(&vm)[0].starts_with("document 1 (VirtualMachine Prod/web): metadata.namespace:")
    );
    let unnamed = vm_doc("web", GOOD_SPEC).replace("  name: web\n", "  labels: {}\n");
    assert_eq!(
        problems(&unnamed),
        ["document 1 (VirtualMachine default/<unnamed>): metadata.name: is required"]
    );
}

#[test]
fn duplicate_objects_are_refused() {
    let yaml = format!(
        "{}---\n{}",
        vm_doc("web", GOOD_SPEC),
        vm_doc("web", GOOD_SPEC)
    );
    let err = parse_manifests(&yaml).unwrap_err();
    assert!(
        matches!(
            err.problems.as_slice(),
            [DocumentError::Duplicate {
                document: 2,
                first: 1,
                ..
            }]
        ),
        "{err}"
    );
}

#[test]
fn status_in_a_manifest_is_ignored() {
    let yaml = format!(
        "{}status:\n  phase: Running\n  host: somewhere\n",
        vm_doc("web", GOOD_SPEC)
    );
    let parsed = parse_manifests(&yaml).unwrap();
    let [Manifest::VirtualMachine(vm)] = parsed.as_slice() else {
        panic!()
    };
    assert_eq!(vm.status, None);
}

#[test]
fn empty_documents_and_syntax_errors() {
    assert!(parse_manifests("").unwrap().is_empty());
    assert!(
        parse_manifests("---\n# only a comment\n")
            .unwrap()
            .is_empty()
    );
    let lines = problems(&format!(
        "{}---\nspec: [unclosed\n",
        vm_doc("web", GOOD_SPEC)
    ));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("document 2: invalid YAML:"),
        "{lines:?}"
    );
}

#[test]
fn numbers_and_booleans_are_not_strings() {
    // kubectl would send these as JSON numbers/booleans, which `type: string` refuses.
    let lines = problems(&vm_doc(
        "web",
        "  image: yun-test\n  cpu: 1\n  memoryMiB: 256\n  hostname: 1234\n",
    ));
    assert!(
        lines[0].contains("spec.hostname: invalid type: integer `1234`, expected a string"),
        "{lines:?}"
    );
    let lines = problems(&vm_doc(
        "web",
        "  image: true\n  cpu: 1\n  memoryMiB: 256\n",
    ));
    assert!(
        lines[0].contains("spec.image: invalid type: boolean `true`"),
        "{lines:?}"
    );
    let lines = problems(&vm_doc(
        "web",
        "  image: yun-test\n  cpu: 1\n  memoryMiB: 256\n  nodeSelector:\n    rack: 7\n",
    ));
    assert!(
        lines[0].contains("spec.nodeSelector.rack: invalid type: integer `7`"),
        "{lines:?}"
    );
    // Quoted, they are strings.
    let ok = vm_doc(
        "web",
        "  image: yun-test\n  cpu: 1\n  memoryMiB: 256\n  hostname: '1234'\n  nodeSelector:\n    rack: '7'\n",
    );
    assert!(parse_manifests(&ok).is_ok());
}

#[test]
fn problems_are_listed_in_document_order() {
    let yaml = format!(
        "{}---\n{}---\nspec: [unclosed\n",
        vm_doc("a", "  image: yun-test\n  cpu: 0\n  memoryMiB: 256\n"),
        vm_doc("b", GOOD_SPEC)
    );
    let lines = problems(&yaml);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("document 1 (VirtualMachine default/a): spec.cpu"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("document 3: invalid YAML"),
        "{lines:?}"
    );
}
