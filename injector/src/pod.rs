//! The parts of a Pod the injector reads, deserialised straight from the AdmissionReview's bytes.
//! A `serde_json::Value` of the object, or even k8s-openapi's full `Pod` (a `Container` is over a
//! kilobyte before any of its fields is set), can take tens of times a body's size for bodies of
//! many small JSON values, and building either dominated the cost of an admission. This view holds
//! only what [`crate::mutate`] decides on: the `hush.dev/` annotations, container, volume and
//! mount names and paths, the user and group ids, whether a container has a `command` and its env
//! names (for `hush.dev/env`), and the sidecar's `HUSH_CONFIG` on a reinvocation; every other field is skipped without being stored, and strings borrow from the
//! body when they hold no escapes. Field by field it follows k8s-openapi's rules (a missing or
//! `null` required field is its default), so a Pod decodes to the same view either way; the one
//! difference is for fields nobody reads, whose types are not checked (the kube-apiserver only
//! sends objects it has already decoded into its own types). [`SpecView::of`] builds the view of
//! a typed `PodSpec`, which is how [`crate::mutate()`] keeps its `Pod` signature.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use hush_contract::ANNOTATION_PREFIX;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

/// `null` or missing: the default, as k8s-openapi decodes its required fields.
fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The object of an AdmissionReview for a Pod. Like k8s-openapi's `Pod`, it refuses an
/// `apiVersion` other than `v1` and a `kind` other than `Pod` (either may be absent).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodView<'a> {
    #[serde(default, rename = "apiVersion", deserialize_with = "api_version_v1")]
    _api_version: (),
    #[serde(default, rename = "kind", deserialize_with = "kind_pod")]
    _kind: (),
    #[serde(default, borrow, deserialize_with = "or_default")]
    pub(crate) metadata: MetaView<'a>,
    #[serde(default, borrow)]
    pub(crate) spec: Option<SpecView<'a>>,
}

fn expect_str<'de, D: Deserializer<'de>>(d: D, expected: &'static str) -> Result<(), D::Error> {
    let found = Cow::<'de, str>::deserialize(d)?;
    if found == expected {
        Ok(())
    } else {
        Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Str(&found),
            &expected,
        ))
    }
}

fn api_version_v1<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    expect_str(d, "v1")
}

fn kind_pod<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    expect_str(d, "Pod")
}

/// `metadata`: names, and the `hush.dev/` annotations only.
#[derive(Deserialize, Default)]
pub(crate) struct MetaView<'a> {
    #[serde(default, borrow)]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) namespace: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "hush_annotations")]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
}

/// The annotations under [`ANNOTATION_PREFIX`]; the others are read (a value that is not a string
/// is refused, as before) but not kept. Nothing else in the injector reads them.
fn hush_annotations<'de, D>(d: D) -> Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct Annotations;
    impl<'de> Visitor<'de> for Annotations {
        type Value = Option<BTreeMap<String, String>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of strings")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                let value = map.next_value::<Cow<'de, str>>()?;
                if key.starts_with(ANNOTATION_PREFIX) {
                    out.insert(key.into_owned(), value.into_owned());
                }
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(Annotations)
}

/// `spec`: what the patch and its checks need.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SpecView<'a> {
    #[serde(default, borrow, deserialize_with = "or_default")]
    pub(crate) containers: Vec<ContainerView<'a>>,
    #[serde(default, borrow)]
    pub(crate) init_containers: Option<Vec<ContainerView<'a>>>,
    #[serde(default, borrow)]
    pub(crate) ephemeral_containers: Option<Vec<Named<'a>>>,
    #[serde(default, borrow)]
    pub(crate) volumes: Option<Vec<Named<'a>>>,
    #[serde(default)]
    pub(crate) security_context: Option<Ids>,
    #[serde(default)]
    pub(crate) share_process_namespace: Option<bool>,
}

/// A container: its name, mounts, ids, and environment (read for our own sidecar only).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerView<'a> {
    #[serde(default, borrow, deserialize_with = "or_default")]
    pub(crate) name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) volume_mounts: Option<Vec<MountView<'a>>>,
    #[serde(default)]
    pub(crate) security_context: Option<Ids>,
    #[serde(default, borrow)]
    pub(crate) env: Option<Vec<EnvView<'a>>>,
    /// Whether `command` has an entry (`hush.dev/env` needs one); the entries are skipped, since
    /// the patch inserts before them. A `bool`, so the view of a container does not grow.
    #[serde(default, rename = "command", deserialize_with = "non_empty_list")]
    pub(crate) has_command: bool,
}

/// `true` for a list with at least one entry; `null`, missing and `[]` are `false`. The entries
/// are read as `IgnoredAny`, which stores nothing.
fn non_empty_list<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let list = Option::<Vec<serde::de::IgnoredAny>>::deserialize(d)?;
    Ok(list.is_some_and(|l| !l.is_empty()))
}

/// Something with a name: a volume, an ephemeral container.
#[derive(Deserialize, Default)]
pub(crate) struct Named<'a> {
    #[serde(default, borrow, deserialize_with = "or_default")]
    pub(crate) name: Cow<'a, str>,
}

/// A volume mount.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MountView<'a> {
    #[serde(default, borrow, deserialize_with = "or_default")]
    pub(crate) name: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "or_default")]
    pub(crate) mount_path: Cow<'a, str>,
}

/// An environment variable (`valueFrom` is not read).
#[derive(Deserialize, Default)]
pub(crate) struct EnvView<'a> {
    #[serde(default, borrow, deserialize_with = "or_default")]
    pub(crate) name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) value: Option<Cow<'a, str>>,
}

/// The ids of a pod's or a container's `securityContext`.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Ids {
    #[serde(default)]
    pub(crate) run_as_user: Option<i64>,
    #[serde(default)]
    pub(crate) run_as_group: Option<i64>,
    #[serde(default)]
    pub(crate) fs_group: Option<i64>,
}

impl<'a> SpecView<'a> {
    /// The view of a typed spec, borrowing its strings.
    pub(crate) fn of(spec: &'a PodSpec) -> SpecView<'a> {
        let containers = |cs: &'a [Container]| cs.iter().map(ContainerView::of).collect();
        SpecView {
            containers: containers(&spec.containers),
            init_containers: spec.init_containers.as_deref().map(containers),
            ephemeral_containers: spec.ephemeral_containers.as_ref().map(|cs| {
                cs.iter()
                    .map(|c| Named {
                        name: Cow::Borrowed(&c.name),
                    })
                    .collect()
            }),
            volumes: spec.volumes.as_ref().map(|vs| {
                vs.iter()
                    .map(|v| Named {
                        name: Cow::Borrowed(&v.name),
                    })
                    .collect()
            }),
            security_context: spec.security_context.as_ref().map(|s| Ids {
                run_as_user: s.run_as_user,
                run_as_group: s.run_as_group,
                fs_group: s.fs_group,
            }),
            share_process_namespace: spec.share_process_namespace,
        }
    }
}

impl<'a> ContainerView<'a> {
    fn of(c: &'a Container) -> ContainerView<'a> {
        ContainerView {
            name: Cow::Borrowed(&c.name),
            volume_mounts: c.volume_mounts.as_ref().map(|ms| {
                ms.iter()
                    .map(|m| MountView {
                        name: Cow::Borrowed(&m.name),
                        mount_path: Cow::Borrowed(&m.mount_path),
                    })
                    .collect()
            }),
            security_context: c.security_context.as_ref().map(|s| Ids {
                run_as_user: s.run_as_user,
                run_as_group: s.run_as_group,
                fs_group: None,
            }),
            env: c.env.as_ref().map(|es| {
                es.iter()
                    .map(|e| EnvView {
                        name: Cow::Borrowed(&e.name),
                        value: e.value.as_deref().map(Cow::Borrowed),
                    })
                    .collect()
            }),
            has_command: c.command.as_ref().is_some_and(|cmd| !cmd.is_empty()),
        }
    }
}
