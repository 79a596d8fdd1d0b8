//! The kinds yunctl knows, from the CustomResourceDefinitions compiled in: their names (for
//! resolving what the user typed), printer columns and scale subresource.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use yun_store::KindInfo;

use crate::error::CtlError;

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    pub json_path: String,
    /// 0: always shown; more: only with `-o wide`.
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindDef {
    pub info: KindInfo,
    pub group: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub columns: Vec<Column>,
    /// The scale subresource's `specReplicasPath` (e.g. `.spec.replicas`), if the kind has one.
    pub scale_path: Option<String>,
}

impl KindDef {
    pub fn from_crd(crd: &CustomResourceDefinition) -> Option<KindDef> {
        let info = KindInfo::from_crd(crd)?;
        let version = crd.spec.versions.iter().find(|v| v.served)?;
        let columns = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| Column {
                name: c.name.clone(),
                type_: c.type_.clone(),
                json_path: c.json_path.clone(),
                priority: c.priority.unwrap_or(0),
            })
            .collect();
        let scale_path = version
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref())
            .map(|s| s.spec_replicas_path.clone());
        let names = &crd.spec.names;
        Some(KindDef {
            singular: names
                .singular
                .clone()
                .unwrap_or_else(|| names.kind.to_lowercase()),
            short_names: names.short_names.clone().unwrap_or_default(),
            group: crd.spec.group.clone(),
            info,
            columns,
            scale_path,
        })
    }

    /// `virtualmachine.yun.dev`: how kubectl names the kind in `created`/`deleted` lines.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.info.kind.to_lowercase(), self.group)
    }

    /// Whether `name` (already lowercase, without a `.group` suffix) names this kind. A short
    /// name also answers to its plural (`vms`), as people type it for a list.
    fn is_named(&self, name: &str) -> bool {
        let short_plural = name.strip_suffix('s');
        self.info.kind.to_lowercase() == name
            || self.info.plural == name
            || self.singular == name
            || self
                .short_names
                .iter()
                .any(|s| s == name || Some(s.as_str()) == short_plural)
    }
}

#[derive(Debug, Clone)]
pub struct Kinds(Vec<KindDef>);

impl Kinds {
    /// Yun's kinds, as this build defines them.
    pub fn builtin() -> Kinds {
        Kinds::from_crds(&yun_crds::all_crds())
    }

    pub fn from_crds(crds: &[CustomResourceDefinition]) -> Kinds {
        Kinds(crds.iter().filter_map(KindDef::from_crd).collect())
    }

    /// The kind the user means: by kind, plural, singular or short name, any case, with or
    /// without the group (`vm`, `VirtualMachine`, `virtualmachines.yun.dev`).
    pub fn resolve(&self, typed: &str) -> Result<&KindDef, CtlError> {
        let lower = typed.to_lowercase();
        self.0
            .iter()
            .find(|k| {
                let bare = lower
                    .strip_suffix(&format!(".{}", k.group))
                    .unwrap_or(&lower);
                k.is_named(bare)
            })
            .ok_or_else(|| CtlError::UnknownKind {
                name: typed.to_owned(),
                known: self.known(),
            })
    }

    /// The kind of a manifest's `kind` field (exact, as the API server matches it).
    pub fn by_kind(&self, kind: &str) -> Option<&KindDef> {
        self.0.iter().find(|k| k.info.kind == kind)
    }

    /// `api-resources`: every kind with its names and scope.
    pub fn table(&self) -> String {
        let mut rows = vec![
            ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
                .map(str::to_owned)
                .to_vec(),
        ];
        rows.extend(self.0.iter().map(|k| {
            vec![
                k.info.plural.clone(),
                k.short_names.join(","),
                k.info.api_version.clone(),
                k.info.namespaced.to_string(),
                k.info.kind.clone(),
            ]
        }));
        crate::table::render(&rows, &mut crate::table::Widths::default())
    }

    fn known(&self) -> String {
        let mut names: Vec<String> = self
            .0
            .iter()
            .map(|k| match k.short_names.as_slice() {
                [] => k.info.plural.clone(),
                short => format!("{} ({})", k.info.plural, short.join(", ")),
            })
            .collect();
        names.sort();
        names.join(", ")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceSubresourceScale, CustomResourceSubresources,
    };

    /// A CRD like Yun's, with a scale subresource none of the real kinds has yet.
    pub(crate) fn scalable_crd() -> CustomResourceDefinition {
        let mut crd = yun_crds::all_crds()
            .into_iter()
            .find(|c| c.spec.names.kind == "VirtualMachine")
            .unwrap();
        crd.spec.names.kind = "VmPool".into();
        crd.spec.names.plural = "vmpools".into();
        crd.spec.names.singular = Some("vmpool".into());
        crd.spec.names.short_names = Some(vec!["pool".into()]);
        crd.spec.versions[0].subresources = Some(CustomResourceSubresources {
            scale: Some(CustomResourceSubresourceScale {
                spec_replicas_path: ".spec.replicas".into(),
                status_replicas_path: ".status.replicas".into(),
                label_selector_path: None,
            }),
            status: None,
        });
        crd
    }

    #[test]
    fn every_name_of_a_kind_resolves_in_any_case() {
        let kinds = Kinds::builtin();
        for typed in [
            "vm",
            "VM",
            "vms",
            "virtualmachine",
            "VirtualMachine",
            "virtualmachines",
            "virtualmachines.yun.dev",
            "vm.yun.dev",
            "yvm",
        ] {
            let k = kinds.resolve(typed).unwrap();
            assert_eq!(k.info.kind, "VirtualMachine", "{typed}");
        }
        assert_eq!(kinds.resolve("vmi").unwrap().info.kind, "VmImage");
        assert_eq!(kinds.resolve("hosts").unwrap().info.kind, "Host");
        assert!(!kinds.resolve("host").unwrap().info.namespaced);
    }

    #[test]
    fn an_unknown_kind_names_the_known_ones() {
        let e = Kinds::builtin().resolve("foo").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("the server doesn't have a resource type \"foo\""),
            "{msg}"
        );
        assert!(msg.contains("virtualmachines (vm, yvm)"), "{msg}");
        assert!(msg.contains("vmimages (vmi)"), "{msg}");
    }

    #[test]
    fn printer_columns_and_scale_come_from_the_crd() {
        let kinds = Kinds::builtin();
        let vm = kinds.resolve("vm").unwrap();
        let names: Vec<&str> = vm.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["Phase", "Host", "CPU", "Memory", "Image", "QoS", "Age"]
        );
        assert_eq!(vm.columns[5].priority, 1);
        assert_eq!(vm.scale_path, None);
        assert_eq!(vm.qualified(), "virtualmachine.yun.dev");

        let table = kinds.table();
        assert!(table.starts_with("NAME "), "{table}");
        assert!(
            table.lines().any(|l| l.split_whitespace().eq([
                "virtualmachines",
                "vm,yvm",
                "yun.dev/v1alpha1",
                "true",
                "VirtualMachine"
            ])),
            "{table}"
        );

        let kinds = Kinds::from_crds(&[scalable_crd()]);
        let pool = kinds.resolve("pool").unwrap();
        assert_eq!(pool.scale_path.as_deref(), Some(".spec.replicas"));
    }
}
