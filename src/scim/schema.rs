//! The SCIM schemas we serve (RFC 7643 §4, §8.7): core User, enterprise User extension and
//! Group, as static attribute definitions.
//!
//! These definitions drive everything schema-aware: input normalisation (canonical names,
//! type coercion), filter evaluation (case-exactness, types), PATCH targets, and the
//! `/Schemas` discovery documents. Attribute names compare case-insensitively, here and
//! only here (`find_attr`).

use serde_json::{Map, Value, json};

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SEARCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

/// One attribute definition (RFC 7643 §7).
#[derive(Debug, Clone, Copy)]
pub struct AttrDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub description: &'static str,
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub: &'static [AttrDef],
}

impl AttrDef {
    const fn new(name: &'static str, ty: AttrType, description: &'static str) -> Self {
        AttrDef {
            name,
            ty,
            multi: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            description,
            canonical: &[],
            reference_types: &[],
            sub: &[],
        }
    }
    const fn multi(self) -> Self {
        AttrDef {
            multi: true,
            ..self
        }
    }
    const fn required(self) -> Self {
        AttrDef {
            required: true,
            ..self
        }
    }
    const fn case_exact(self) -> Self {
        AttrDef {
            case_exact: true,
            ..self
        }
    }
    const fn mutability(self, mutability: Mutability) -> Self {
        AttrDef { mutability, ..self }
    }
    const fn returned(self, returned: Returned) -> Self {
        AttrDef { returned, ..self }
    }
    const fn unique(self) -> Self {
        AttrDef {
            uniqueness: Uniqueness::Server,
            ..self
        }
    }
    const fn canonical(self, canonical: &'static [&'static str]) -> Self {
        AttrDef { canonical, ..self }
    }
    const fn refs(self, reference_types: &'static [&'static str]) -> Self {
        AttrDef {
            reference_types,
            ..self
        }
    }
    const fn sub(self, sub: &'static [AttrDef]) -> Self {
        AttrDef { sub, ..self }
    }

    pub fn is_complex(&self) -> bool {
        self.ty == AttrType::Complex
    }

    /// The definition of a sub-attribute, by case-insensitive name.
    pub fn sub_attr(&self, name: &str) -> Option<&'static AttrDef> {
        find_attr(self.sub, name)
    }
}

const fn string(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::String, description)
}
const fn boolean(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::Boolean, description)
}
const fn complex(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::Complex, description)
}
const fn reference(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::Reference, description)
}

/// Finds an attribute by name, ignoring ASCII case (SCIM names are ASCII).
pub fn find_attr(defs: &'static [AttrDef], name: &str) -> Option<&'static AttrDef> {
    defs.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

const NAME_SUB: &[AttrDef] = &[
    string(
        "formatted",
        "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display.",
    ),
    string(
        "familyName",
        "The family name of the User, or last name in most Western languages.",
    ),
    string(
        "givenName",
        "The given name of the User, or first name in most Western languages.",
    ),
    string("middleName", "The middle name(s) of the User."),
    string(
        "honorificPrefix",
        "The honorific prefix(es) of the User, or title in most Western languages.",
    ),
    string(
        "honorificSuffix",
        "The honorific suffix(es) of the User, or suffix in most Western languages.",
    ),
];

const fn plural_sub(value: AttrDef, types: &'static [&'static str]) -> [AttrDef; 4] {
    [
        value,
        string(
            "display",
            "A human-readable name, primarily used for display purposes.",
        )
        .mutability(Mutability::ReadWrite),
        string("type", "A label indicating the attribute's function.").canonical(types),
        boolean(
            "primary",
            "A Boolean value indicating the 'primary' or preferred attribute value for this attribute. The primary attribute value 'true' MUST appear no more than once.",
        ),
    ]
}

const EMAIL_SUB: &[AttrDef] = &plural_sub(
    string("value", "Email address for the User."),
    &["work", "home", "other"],
);
const PHONE_SUB: &[AttrDef] = &plural_sub(
    string("value", "Phone number of the User."),
    &["work", "home", "mobile", "fax", "pager", "other"],
);
const IMS_SUB: &[AttrDef] = &plural_sub(
    string("value", "Instant messaging address for the User."),
    &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
);
const PHOTO_SUB: &[AttrDef] = &plural_sub(
    reference("value", "URL of a photo of the User.").refs(&["external"]),
    &["photo", "thumbnail"],
);
const ENTITLEMENT_SUB: &[AttrDef] =
    &plural_sub(string("value", "The value of an entitlement."), &[]);
const ROLE_SUB: &[AttrDef] = &plural_sub(string("value", "The value of a role."), &[]);
const CERT_SUB: &[AttrDef] = &plural_sub(
    AttrDef::new(
        "value",
        AttrType::Binary,
        "The value of an X.509 certificate.",
    ),
    &[],
);

const ADDRESS_SUB: &[AttrDef] = &[
    string(
        "formatted",
        "The full mailing address, formatted for display or use with a mailing label.",
    ),
    string(
        "streetAddress",
        "The full street address component, which may include house number, street name, P.O. box, and multi-line extended street address information.",
    ),
    string("locality", "The city or locality component."),
    string("region", "The state or region component."),
    string("postalCode", "The zip code or postal code component."),
    string("country", "The country name component."),
    string(
        "type",
        "A label indicating the attribute's function, e.g., 'work' or 'home'.",
    )
    .canonical(&["work", "home", "other"]),
    boolean(
        "primary",
        "A Boolean value indicating the 'primary' or preferred attribute value for this attribute.",
    ),
];

const USER_GROUPS_SUB: &[AttrDef] = &[
    string("value", "The identifier of the User's group.").mutability(Mutability::ReadOnly),
    reference(
        "$ref",
        "The URI of the corresponding 'Group' resource to which the user belongs.",
    )
    .refs(&["User", "Group"])
    .mutability(Mutability::ReadOnly),
    string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    )
    .mutability(Mutability::ReadOnly),
    string(
        "type",
        "A label indicating the attribute's function, e.g., 'direct' or 'indirect'.",
    )
    .canonical(&["direct", "indirect"])
    .mutability(Mutability::ReadOnly),
];

/// Core User attributes (RFC 7643 §4.1, §8.7.1).
pub const USER_ATTRS: &[AttrDef] = &[
    string("userName", "Unique identifier for the User, typically used by the user to directly authenticate to the service provider. Each User MUST include a non-empty userName value. This identifier MUST be unique across the service provider's entire set of Users.")
        .required()
        .unique(),
    complex("name", "The components of the user's real name.").sub(NAME_SUB),
    string("displayName", "The name of the User, suitable for display to end-users."),
    string("nickName", "The casual way to address the user in real life."),
    reference("profileUrl", "A fully qualified URL pointing to a page representing the User's online profile.").refs(&["external"]),
    string("title", "The user's title, such as \"Vice President.\""),
    string("userType", "Used to identify the relationship between the organization and the user."),
    string("preferredLanguage", "Indicates the User's preferred written or spoken language."),
    string("locale", "Used to indicate the User's default location for purposes of localizing items such as currency, date time format, or numerical representations."),
    string("timezone", "The User's time zone in the 'Olson' time zone database format, e.g., 'America/Los_Angeles'."),
    boolean("active", "A Boolean value indicating the User's administrative status."),
    string("password", "The User's cleartext password. Write-only: it is never returned.")
        .mutability(Mutability::WriteOnly)
        .returned(Returned::Never),
    complex("emails", "Email addresses for the user.").multi().sub(EMAIL_SUB),
    complex("phoneNumbers", "Phone numbers for the User.").multi().sub(PHONE_SUB),
    complex("ims", "Instant messaging addresses for the User.").multi().sub(IMS_SUB),
    complex("photos", "URLs of photos of the User.").multi().sub(PHOTO_SUB),
    complex("addresses", "A physical mailing address for this User.").multi().sub(ADDRESS_SUB),
    complex("groups", "A list of groups to which the user belongs, either through direct membership, through nested groups, or dynamically calculated.")
        .multi()
        .mutability(Mutability::ReadOnly)
        .sub(USER_GROUPS_SUB),
    complex("entitlements", "A list of entitlements for the User that represent a thing the User has.").multi().sub(ENTITLEMENT_SUB),
    complex("roles", "A list of roles for the User that collectively represent who the User is, e.g., 'Student', 'Faculty'.").multi().sub(ROLE_SUB),
    complex("x509Certificates", "A list of certificates issued to the User.").multi().sub(CERT_SUB),
];

const MANAGER_SUB: &[AttrDef] = &[
    string(
        "value",
        "The id of the SCIM resource representing the User's manager.",
    ),
    reference(
        "$ref",
        "The URI of the SCIM resource representing the User's manager.",
    )
    .refs(&["User"]),
    string("displayName", "The displayName of the User's manager.")
        .mutability(Mutability::ReadOnly),
];

/// Enterprise User extension attributes (RFC 7643 §4.3).
pub const ENTERPRISE_ATTRS: &[AttrDef] = &[
    string(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person, typically based on order of hire or association with an organization.",
    ),
    string("costCenter", "Identifies the name of a cost center."),
    string("organization", "Identifies the name of an organization."),
    string("division", "Identifies the name of a division."),
    string("department", "Identifies the name of a department."),
    complex("manager", "The User's manager.").sub(MANAGER_SUB),
];

const MEMBER_SUB: &[AttrDef] = &[
    string("value", "Identifier of the member of this Group.")
        .mutability(Mutability::Immutable)
        .case_exact(),
    reference(
        "$ref",
        "The URI corresponding to a SCIM resource that is a member of this Group.",
    )
    .refs(&["User", "Group"])
    .mutability(Mutability::Immutable),
    string("display", "A human-readable name for the member."),
    string(
        "type",
        "A label indicating the type of resource, e.g., 'User' or 'Group'.",
    )
    .canonical(&["User", "Group"])
    .mutability(Mutability::Immutable),
];

/// Group attributes (RFC 7643 §4.2).
pub const GROUP_ATTRS: &[AttrDef] = &[
    string("displayName", "A human-readable name for the Group. REQUIRED. Unique across Groups in this service provider.")
        .required()
        .unique(),
    complex("members", "A list of members of the Group.").multi().sub(MEMBER_SUB),
];

const META_SUB: &[AttrDef] = &[
    string("resourceType", "The name of the resource type of the resource.")
        .case_exact()
        .mutability(Mutability::ReadOnly),
    AttrDef::new("created", AttrType::DateTime, "The date and time the resource was added to the service provider.")
        .mutability(Mutability::ReadOnly),
    AttrDef::new("lastModified", AttrType::DateTime, "The most recent date and time that the details of this resource were updated at the service provider.")
        .mutability(Mutability::ReadOnly),
    reference("location", "The URI of the resource being returned.").mutability(Mutability::ReadOnly),
    string("version", "The version of the resource being returned.")
        .case_exact()
        .mutability(Mutability::ReadOnly),
];

/// Attributes common to every resource (RFC 7643 §3.1). Not listed in `/Schemas`.
pub const COMMON_ATTRS: &[AttrDef] = &[
    string(
        "id",
        "A unique identifier for a SCIM resource as defined by the service provider.",
    )
    .case_exact()
    .mutability(Mutability::ReadOnly)
    .returned(Returned::Always)
    .unique(),
    string(
        "externalId",
        "A String that is an identifier for the resource as defined by the provisioning client.",
    )
    .case_exact(),
    complex("meta", "A complex attribute containing resource metadata.")
        .mutability(Mutability::ReadOnly)
        .sub(META_SUB),
];

/// A schema extension a resource type carries.
#[derive(Debug, Clone, Copy)]
pub struct Extension {
    pub urn: &'static str,
    pub attrs: &'static [AttrDef],
    pub name: &'static str,
    pub description: &'static str,
}

pub const ENTERPRISE: Extension = Extension {
    urn: ENTERPRISE_URN,
    attrs: ENTERPRISE_ATTRS,
    name: "EnterpriseUser",
    description: "Enterprise User",
};

/// The resource types this service provider serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 2] = [ResourceKind::User, ResourceKind::Group];

    /// `meta.resourceType` and the ResourceType `name`.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    /// The endpoint path segment: `Users` / `Groups`.
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
    pub fn schema_urn(self) -> &'static str {
        match self {
            ResourceKind::User => USER_URN,
            ResourceKind::Group => GROUP_URN,
        }
    }
    pub fn attrs(self) -> &'static [AttrDef] {
        match self {
            ResourceKind::User => USER_ATTRS,
            ResourceKind::Group => GROUP_ATTRS,
        }
    }
    pub fn extensions(self) -> &'static [Extension] {
        match self {
            ResourceKind::User => &[ENTERPRISE],
            ResourceKind::Group => &[],
        }
    }
    /// The attribute that must be unique (case-insensitively) among resources of the kind.
    pub fn unique_attr(self) -> &'static str {
        match self {
            ResourceKind::User => "userName",
            ResourceKind::Group => "displayName",
        }
    }
    pub fn from_name(name: &str) -> Option<ResourceKind> {
        ResourceKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }
    pub fn from_endpoint(segment: &str) -> Option<ResourceKind> {
        ResourceKind::ALL
            .into_iter()
            .find(|k| k.endpoint().eq_ignore_ascii_case(segment))
    }
    /// The extension whose URN equals `urn` (case-insensitively).
    pub fn extension(self, urn: &str) -> Option<&'static Extension> {
        self.extensions()
            .iter()
            .find(|e| e.urn.eq_ignore_ascii_case(urn))
    }
}

fn attr_json(def: &AttrDef) -> Value {
    let ty = match def.ty {
        AttrType::String => "string",
        AttrType::Boolean => "boolean",
        AttrType::Decimal => "decimal",
        AttrType::Integer => "integer",
        AttrType::DateTime => "dateTime",
        AttrType::Binary => "binary",
        AttrType::Reference => "reference",
        AttrType::Complex => "complex",
    };
    let mutability = match def.mutability {
        Mutability::ReadOnly => "readOnly",
        Mutability::ReadWrite => "readWrite",
        Mutability::Immutable => "immutable",
        Mutability::WriteOnly => "writeOnly",
    };
    let returned = match def.returned {
        Returned::Always => "always",
        Returned::Never => "never",
        Returned::Default => "default",
        Returned::Request => "request",
    };
    let uniqueness = match def.uniqueness {
        Uniqueness::None => "none",
        Uniqueness::Server => "server",
        Uniqueness::Global => "global",
    };
    let mut obj = Map::new();
    obj.insert("name".into(), def.name.into());
    obj.insert("type".into(), ty.into());
    obj.insert("multiValued".into(), def.multi.into());
    obj.insert("description".into(), def.description.into());
    obj.insert("required".into(), def.required.into());
    if !def.canonical.is_empty() {
        obj.insert("canonicalValues".into(), json!(def.canonical));
    }
    if def.ty != AttrType::Complex && def.ty != AttrType::Boolean {
        obj.insert("caseExact".into(), def.case_exact.into());
    }
    obj.insert("mutability".into(), mutability.into());
    obj.insert("returned".into(), returned.into());
    if def.ty != AttrType::Complex && def.ty != AttrType::Boolean {
        obj.insert("uniqueness".into(), uniqueness.into());
    }
    if !def.reference_types.is_empty() {
        obj.insert("referenceTypes".into(), json!(def.reference_types));
    }
    if !def.sub.is_empty() {
        obj.insert(
            "subAttributes".into(),
            Value::Array(def.sub.iter().map(attr_json).collect()),
        );
    }
    Value::Object(obj)
}

fn schema_json(id: &str, name: &str, description: &str, attrs: &[AttrDef], base: &str) -> Value {
    json!({
        "schemas": [SCHEMA_URN],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base}/Schemas/{id}"),
        }
    })
}

/// The `/Schemas` documents: User, EnterpriseUser, Group. `base` is the absolute SCIM base URL.
pub fn schema_documents(base: &str) -> Vec<Value> {
    vec![
        schema_json(USER_URN, "User", "User Account", USER_ATTRS, base),
        schema_json(
            ENTERPRISE_URN,
            ENTERPRISE.name,
            ENTERPRISE.description,
            ENTERPRISE_ATTRS,
            base,
        ),
        schema_json(GROUP_URN, "Group", "Group", GROUP_ATTRS, base),
    ]
}

/// The `/ResourceTypes` documents.
pub fn resource_type_documents(base: &str) -> Vec<Value> {
    ResourceKind::ALL
        .into_iter()
        .map(|kind| {
            let extensions: Vec<Value> = kind
                .extensions()
                .iter()
                .map(|e| json!({"schema": e.urn, "required": false}))
                .collect();
            let mut doc = json!({
                "schemas": [RESOURCE_TYPE_URN],
                "id": kind.name(),
                "name": kind.name(),
                "endpoint": format!("/{}", kind.endpoint()),
                "description": match kind {
                    ResourceKind::User => "User Account",
                    ResourceKind::Group => "Group",
                },
                "schema": kind.schema_urn(),
                "meta": {
                    "resourceType": "ResourceType",
                    "location": format!("{base}/ResourceTypes/{}", kind.name()),
                }
            });
            if let (false, Some(obj)) = (extensions.is_empty(), doc.as_object_mut()) {
                obj.insert("schemaExtensions".into(), Value::Array(extensions));
            }
            doc
        })
        .collect()
}

/// The `/ServiceProviderConfig` document (RFC 7643 §5).
pub fn service_provider_config(base: &str, max_results: usize, max_payload: usize) -> Value {
    json!({
        "schemas": [SPC_URN],
        "documentationUri": "https://github.com/scim-bridge/scim-bridge#readme",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": max_payload},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A long-lived bearer token configured per client in scim-bridge's configuration.",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_no_nulls(v: &Value, at: &str) {
        match v {
            Value::Null => panic!("null at {at}"),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, x)| walk_no_nulls(x, &format!("{at}[{i}]"))),
            Value::Object(m) => m
                .iter()
                .for_each(|(k, x)| walk_no_nulls(x, &format!("{at}.{k}"))),
            _ => {}
        }
    }

    #[test]
    fn schema_documents_have_no_null_properties_and_camel_cased_characteristics() {
        for doc in schema_documents("http://h/scim/v2") {
            walk_no_nulls(&doc, "$");
            let text = doc.to_string();
            assert!(text.contains("\"readWrite\""));
            assert!(!text.contains("read_write"));
        }
    }

    #[test]
    fn attribute_lookup_ignores_case() {
        assert_eq!(
            find_attr(USER_ATTRS, "USERNAME").map(|d| d.name),
            Some("userName")
        );
        assert_eq!(
            find_attr(USER_ATTRS, "phonenumbers").map(|d| d.name),
            Some("phoneNumbers")
        );
        assert!(find_attr(USER_ATTRS, "nmae").is_none());
    }

    #[test]
    fn user_resource_type_lists_the_enterprise_extension() {
        let docs = resource_type_documents("http://h");
        assert_eq!(docs[0]["endpoint"], "/Users");
        assert_eq!(docs[0]["schemaExtensions"][0]["schema"], ENTERPRISE_URN);
        assert!(docs[1].get("schemaExtensions").is_none());
    }
}
