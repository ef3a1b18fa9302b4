//! The subschema parser and the mapping check, one rule per test. The definitions are
//! OpenLDAP's own (core, cosine, inetorgperson, nis), as its `cn=Subschema` publishes them.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::*;
use crate::config::Environment;

const TOP: &str =
    "( 2.5.6.0 NAME 'top' DESC 'top of the superclass chain' ABSTRACT MUST objectClass )";
const PERSON: &str = "( 2.5.6.6 NAME 'person' DESC 'RFC2256: a person' SUP top STRUCTURAL MUST ( sn $ cn ) MAY ( userPassword $ telephoneNumber $ seeAlso $ description ) )";

const OBJECT_CLASSES: &[&str] = &[
    TOP,
    "( 1.3.6.1.4.1.1466.101.120.111 NAME 'extensibleObject' DESC 'RFC4512: extensible object' SUP top AUXILIARY )",
    PERSON,
    "( 2.5.6.7 NAME 'organizationalPerson' DESC 'RFC2256: an organizational person' SUP person STRUCTURAL MAY ( title $ x121Address $ registeredAddress $ destinationIndicator $ preferredDeliveryMethod $ telexNumber $ teletexTerminalIdentifier $ telephoneNumber $ internationaliSDNNumber $ facsimileTelephoneNumber $ street $ postOfficeBox $ postalCode $ postalAddress $ physicalDeliveryOfficeName $ ou $ st $ l ) )",
    "( 2.16.840.1.113730.3.2.2 NAME 'inetOrgPerson' DESC 'RFC2798: Internet Organizational Person' SUP organizationalPerson STRUCTURAL MAY ( audio $ businessCategory $ carLicense $ departmentNumber $ displayName $ employeeNumber $ employeeType $ givenName $ homePhone $ homePostalAddress $ initials $ jpegPhoto $ labeledURI $ mail $ manager $ mobile $ o $ pager $ photo $ roomNumber $ secretary $ uid $ userCertificate $ x500uniqueIdentifier $ preferredLanguage $ userSMIMECertificate $ userPKCS12 ) )",
    "( 2.5.6.9 NAME 'groupOfNames' DESC 'RFC2256: a group of names (DNs)' SUP top STRUCTURAL MUST ( member $ cn ) MAY ( businessCategory $ seeAlso $ owner $ ou $ o $ description ) )",
    "( 2.5.6.17 NAME 'groupOfUniqueNames' DESC 'RFC2256: a group of unique names (DN and Unique Identifier)' SUP top STRUCTURAL MUST ( uniqueMember $ cn ) MAY ( businessCategory $ seeAlso $ owner $ ou $ o $ description ) )",
    "( 1.3.6.1.1.1.2.2 NAME 'posixGroup' DESC 'Abstraction of a group of accounts' SUP top STRUCTURAL MUST ( cn $ gidNumber ) MAY ( userPassword $ memberUid $ description ) )",
    "( 1.3.6.1.1.1.2.0 NAME 'posixAccount' DESC 'Abstraction of an account with POSIX attributes' SUP top AUXILIARY MUST ( cn $ uid $ uidNumber $ gidNumber $ homeDirectory ) MAY ( userPassword $ loginShell $ gecos $ description ) )",
    "( 2.5.6.5 NAME 'organizationalUnit' DESC 'RFC2256: an organizational unit' SUP top STRUCTURAL MUST ou MAY ( userPassword $ searchGuide $ seeAlso $ businessCategory $ x121Address $ registeredAddress $ destinationIndicator $ preferredDeliveryMethod $ telexNumber $ teletexTerminalIdentifier $ telephoneNumber $ internationaliSDNNumber $ facsimileTelephoneNumber $ street $ postOfficeBox $ postalCode $ postalAddress $ physicalDeliveryOfficeName $ st $ l $ description ) )",
];

const CN: &str = "( 2.5.4.3 NAME ( 'cn' 'commonName' ) DESC 'RFC4519: common name(s) for which the entity is known by' SUP name )";

const ATTRIBUTE_TYPES: &[&str] = &[
    "( 2.5.4.0 NAME 'objectClass' DESC 'RFC4512: object classes of the entity' EQUALITY objectIdentifierMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.38 )",
    "( 2.5.4.41 NAME 'name' DESC 'RFC4519: common supertype of name attributes' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{32768} )",
    CN,
    "( 2.5.4.4 NAME ( 'sn' 'surname' ) DESC 'RFC2256: last (family) name(s) for which the entity is known by' SUP name )",
    "( 0.9.2342.19200300.100.1.1 NAME ( 'uid' 'userid' ) DESC 'RFC4519: user identifier' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} )",
    "( 0.9.2342.19200300.100.1.3 NAME ( 'mail' 'rfc822Mailbox' ) DESC 'RFC1274: RFC822 Mailbox' EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )",
    "( 2.5.4.31 NAME 'member' DESC 'RFC2256: member of a group' SUP distinguishedName )",
    "( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' SYNTAX '1.3.6.1.4.1.1466.115.121.1.15' SINGLE-VALUE )",
    // As Active Directory publishes it (quoted syntax OID): computed by the server.
    "( 1.2.840.113556.1.2.102 NAME 'memberOf' SYNTAX '1.3.6.1.4.1.1466.115.121.1.12' NO-USER-MODIFICATION )",
    "( 2.5.4.50 NAME 'uniqueMember' DESC 'RFC2256: unique member of a group' EQUALITY uniqueMemberMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.34 )",
    "( 1.3.6.1.1.1.1.12 NAME 'memberUid' EQUALITY caseExactIA5Match SUBSTR caseExactIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )",
    "( 2.5.4.42 NAME ( 'givenName' 'gn' ) DESC 'RFC2256: first name(s) for which the entity is known by' SUP name )",
    "( 2.16.840.1.113730.3.1.241 NAME 'displayName' DESC 'RFC2798: preferred name to be used when displaying entries' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )",
    "( 2.5.4.12 NAME 'title' DESC 'RFC2256: title associated with the entity' SUP name )",
    "( 2.5.4.20 NAME 'telephoneNumber' DESC 'RFC2256: Telephone Number' EQUALITY telephoneNumberMatch SUBSTR telephoneNumberSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.50{32} )",
    "( 0.9.2342.19200300.100.1.41 NAME ( 'mobile' 'mobileTelephoneNumber' ) DESC 'RFC1274: mobile telephone number' EQUALITY telephoneNumberMatch SUBSTR telephoneNumberSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.50 )",
    "( 2.16.840.1.113730.3.1.3 NAME 'employeeNumber' DESC 'RFC2798: numerically identifies an employee within an organization' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )",
    "( 2.16.840.1.113730.3.1.2 NAME 'departmentNumber' DESC 'RFC2798: identifies a department within an organization' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )",
    "( 2.5.4.10 NAME ( 'o' 'organizationName' ) DESC 'RFC2256: organization this object belongs to' SUP name )",
    "( 0.9.2342.19200300.100.1.10 NAME 'manager' DESC 'RFC1274: DN of manager' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )",
    "( 2.5.4.13 NAME 'description' DESC 'RFC4519: descriptive information' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} )",
    "( 2.5.4.11 NAME ( 'ou' 'organizationalUnitName' ) DESC 'RFC2256: organizational unit this object belongs to' SUP name )",
    "( 1.3.6.1.1.1.1.1 NAME 'gidNumber' DESC 'RFC2307: An integer uniquely identifying a group in an administrative domain' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
    "( 1.3.6.1.1.1.1.0 NAME 'uidNumber' DESC 'RFC2307: An integer uniquely identifying a user in an administrative domain' EQUALITY integerMatch ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )",
    "( 1.3.6.1.1.1.1.3 NAME 'homeDirectory' DESC 'The absolute path to the home directory' EQUALITY caseExactIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )",
    "( 2.5.4.49 NAME 'distinguishedName' DESC 'RFC4519: common supertype of DN attributes' EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )",
    "( 1.3.6.1.4.1.42.2.27.8.1.17 NAME 'pwdAccountLockedTime' DESC 'The time an user account was locked' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )",
];

fn openldap() -> Subschema {
    let (schema, errors) = Subschema::parse(
        OBJECT_CLASSES.iter().copied(),
        ATTRIBUTE_TYPES.iter().copied(),
    );
    assert_eq!(errors, vec![]);
    schema
}

// --- Parsing ---------------------------------------------------------------------------

#[test]
fn an_object_class_gives_its_oid_name_superclass_kind_and_attribute_lists() {
    let person = ObjectClass::parse(PERSON).unwrap();
    assert_eq!(person.oid, "2.5.6.6");
    assert_eq!(person.names, ["person"]);
    assert_eq!(person.superiors, ["top"]);
    assert_eq!(person.kind, ClassKind::Structural);
    assert_eq!(person.must, ["sn", "cn"]);
    assert_eq!(
        person.may,
        ["userPassword", "telephoneNumber", "seeAlso", "description"]
    );
    assert!(!person.obsolete);

    let top = ObjectClass::parse(TOP).unwrap();
    assert_eq!(top.kind, ClassKind::Abstract);
    assert_eq!(
        top.must,
        ["objectClass"],
        "a single MUST without parentheses"
    );
    assert!(top.superiors.is_empty());
}

#[test]
fn a_class_may_have_several_names_and_several_superclasses() {
    let root = ObjectClass::parse("( 1.3.6.1.4.1.4203.1.4.1 NAME ( 'OpenLDAProotDSE' 'LDAProotDSE' ) DESC 'OpenLDAP Root DSE object' SUP top STRUCTURAL MAY cn )").unwrap();
    assert_eq!(root.names, ["OpenLDAProotDSE", "LDAProotDSE"]);
    assert_eq!(root.may, ["cn"]);
    let both =
        ObjectClass::parse("( 1.2.3.4 NAME 'both' SUP ( person $ posixAccount ) AUXILIARY )")
            .unwrap();
    assert_eq!(both.superiors, ["person", "posixAccount"]);
    assert_eq!(both.kind, ClassKind::Auxiliary);
}

#[test]
fn a_class_without_a_kind_is_structural() {
    let c = ObjectClass::parse("( 1.2.3 NAME 'plain' MAY cn )").unwrap();
    assert_eq!(c.kind, ClassKind::Structural);
    assert_eq!(c.name(), "plain");
    let unnamed = ObjectClass::parse("( 1.2.3 )").unwrap();
    assert_eq!(
        unnamed.name(),
        "1.2.3",
        "a class without a name goes by its OID"
    );
}

#[test]
fn an_attribute_type_gives_its_names_aliases_included_and_its_supertype() {
    let cn = AttributeType::parse(CN).unwrap();
    assert_eq!(cn.oid, "2.5.4.3");
    assert_eq!(cn.names, ["cn", "commonName"]);
    assert_eq!(cn.superior.as_deref(), Some("name"));
    assert!(!cn.operational);
    let uid = AttributeType::parse(ATTRIBUTE_TYPES[4]).unwrap();
    assert_eq!(uid.names, ["uid", "userid"]);
    assert_eq!(
        uid.superior, None,
        "SYNTAX with a length {{256}} is read over"
    );
}

#[test]
fn an_attribute_type_used_by_the_directory_itself_is_operational() {
    let created = AttributeType::parse("( 2.5.18.1 NAME 'createTimestamp' DESC 'RFC4512: time which object was created' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE NO-USER-MODIFICATION USAGE directoryOperation )").unwrap();
    assert!(created.operational);
    let user = AttributeType::parse("( 1.2.3 NAME 'x' USAGE userApplications )").unwrap();
    assert!(!user.operational);
}

#[test]
fn extensions_and_keywords_the_parser_does_not_know_are_skipped() {
    let access = AttributeType::parse("( 1.3.6.1.4.1.4203.1.12.2.3.0.1 NAME 'olcAccess' DESC 'Access Control List' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 X-ORDERED 'VALUES' )").unwrap();
    assert_eq!(access.names, ["olcAccess"]);
    let c = ObjectClass::parse(
        "( 1.2.3 NAME 'x' X-ORIGIN ( 'RFC 4519' 'user defined' ) FUTURE ( a $ ( b ) ) LATER 'text' MAY ( cn $ sn ) X-SCHEMA-FILE '99user.ldif' )",
    )
    .unwrap();
    assert_eq!(c.may, ["cn", "sn"]);
}

#[test]
fn quoted_strings_resolve_their_escapes() {
    let c = ObjectClass::parse(
        r"( 1.2.3 NAME 'o\27brien' DESC 'a \5C and a \27quote\27 ) MUST x' MAY cn )",
    )
    .unwrap();
    assert_eq!(c.names, ["o'brien"]);
    assert_eq!(c.may, ["cn"], "the parenthesis inside the string is text");
    assert!(c.must.is_empty());
}

#[test]
fn active_directory_and_389_forms_are_read() {
    // AD: AUX lists the auxiliary classes; 389-DS: non-numeric OIDs; some servers quote OIDs.
    let user = ObjectClass::parse("( 1.2.840.113556.1.5.9 NAME 'user' SUP organizationalPerson STRUCTURAL AUX ( bootableDevice $ mailRecipient ) MAY ( userWorkstations $ mail ) )").unwrap();
    assert_eq!(user.auxiliaries, ["bootableDevice", "mailRecipient"]);
    assert_eq!(user.may, ["userWorkstations", "mail"]);
    let admin = ObjectClass::parse("( nsAdminGroup-oid NAME 'nsAdminGroup' DESC 'Netscape defined objectclass' SUP top MUST cn MAY ( nsAdminGroupName $ description ) X-ORIGIN 'Netscape' )").unwrap();
    assert_eq!(admin.oid, "nsAdminGroup-oid");
    let quoted =
        AttributeType::parse("( '1.2.3' NAME 'q' SYNTAX '1.3.6.1.4.1.1466.115.121.1.15' )")
            .unwrap();
    assert_eq!(quoted.oid, "1.2.3");
}

#[test]
fn malformed_definitions_are_errors_not_panics() {
    for text in [
        "",
        "   ",
        "person",
        "( )",
        "( 2.5.6.6 NAME 'person'",
        "( 2.5.6.6 NAME 'person )",
        "( 2.5.6.6 NAME )",
        "( 2.5.6.6 NAME ( 'a' 'b' )",
        "( 2.5.6.6 MUST ( sn $ cn )",
        "( 2.5.6.6 MUST )",
        "( 2.5.6.6 MUST ( sn $ ( cn ) ) )",
        "( 2.5.6.6 'person' )",
        "( 2.5.6.6 $ )",
        "( 2.5.6.6 NAME 'person' ) trailing",
        "( 2.5.6.6 FUTURE ( never closed )",
        "( 2.5.6.6 NAME 'a\\",
        "( ( 2.5.6.6 ) )",
    ] {
        assert!(ObjectClass::parse(text).is_err(), "{text:?} parsed");
        assert!(AttributeType::parse(text).is_err(), "{text:?} parsed");
    }
}

#[test]
fn every_truncation_of_a_real_definition_is_an_error() {
    for (at, _) in PERSON.char_indices().skip(1) {
        let prefix = &PERSON[..at];
        assert!(ObjectClass::parse(prefix).is_err(), "{prefix:?} parsed");
    }
    assert!(ObjectClass::parse(PERSON).is_ok());
}

#[test]
fn a_parse_error_quotes_the_definition_and_says_why() {
    let e = ObjectClass::parse("( 2.5.6.6 NAME 'person' MUST )").unwrap_err();
    assert!(e.reason.contains("MUST"), "{e}");
    assert!(e.to_string().contains("( 2.5.6.6 NAME 'person'"), "{e}");
    let long = format!("( 1.2.3 NAME 'x' DESC '{}' ", "y".repeat(500));
    let e = ObjectClass::parse(&long).unwrap_err();
    assert!(
        e.definition.chars().count() <= QUOTED_DEFINITION_CHARS + 1,
        "{e}"
    );
}

#[test]
fn a_subschema_leaves_out_the_definitions_it_cannot_read_and_says_which() {
    let (schema, errors) = Subschema::parse([PERSON, "( broken"], [CN, "nonsense"]);
    assert!(schema.object_class("person").is_some());
    assert!(schema.attribute_type("cn").is_some());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(schema.object_classes().len(), 1);
    assert_eq!(schema.attribute_types().len(), 1);
}

#[test]
fn names_compare_case_insensitively_and_oids_and_aliases_name_the_same_thing() {
    let s = openldap();
    assert_eq!(
        s.object_class("INETORGPERSON").map(|c| c.oid.as_str()),
        Some("2.16.840.1.113730.3.2.2")
    );
    assert_eq!(
        s.object_class("2.5.6.6").map(ObjectClass::name),
        Some("person")
    );
    assert_eq!(
        s.attribute_type("commonname").map(AttributeType::name),
        Some("cn")
    );
    assert!(s.same_attribute("cn", "commonName"));
    assert!(s.same_attribute("CN", "2.5.4.3"));
    assert!(!s.same_attribute("cn", "sn"));
    assert!(
        !s.same_attribute("cn", "name"),
        "a supertype is another attribute"
    );
    assert!(s.same_attribute("unknownAttr", "UNKNOWNATTR"));
}

#[test]
fn superclasses_are_followed_to_top_and_cycles_end() {
    let s = openldap();
    let chain: Vec<&str> = s
        .with_superclasses("inetOrgPerson")
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(
        chain,
        ["inetOrgPerson", "organizationalPerson", "person", "top"]
    );
    assert!(s.with_superclasses("nothing").is_empty());

    let (cyclic, _) = Subschema::parse(
        [
            "( 1.1 NAME 'a' SUP b MUST x )",
            "( 1.2 NAME 'b' SUP ( a $ missing ) )",
        ],
        [],
    );
    let names: Vec<&str> = cyclic
        .with_superclasses("a")
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn rdn_attributes_come_from_the_first_rdn_of_the_template() {
    assert_eq!(rdn_attributes("uid={userName},ou=people,{base}"), ["uid"]);
    assert_eq!(rdn_attributes(" cn = {displayName} ; ou=groups"), ["cn"]);
    assert_eq!(
        rdn_attributes("cn={displayName}+uid={id},ou=people,{base}"),
        ["cn", "uid"]
    );
    assert_eq!(
        rdn_attributes(r"cn=a\,b {x},ou=people"),
        ["cn"],
        "an escaped comma is not the end"
    );
    assert_eq!(
        rdn_attributes(r#"uid={emails[type eq "work"].value},{base}"#),
        ["uid"]
    );
    assert_eq!(rdn_attributes("{base}"), Vec::<String>::new());
}

// --- Checking a mapping ----------------------------------------------------------------

struct FakeEnv(HashMap<&'static str, String>);

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
    fn read_file(&self, path: &Path) -> io::Result<String> {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            path.display().to_string(),
        ))
    }
}

fn env() -> FakeEnv {
    FakeEnv(HashMap::from([
        (
            "SCIM_BRIDGE_TOKEN",
            "0123456789abcdef0123456789abcdef".into(),
        ),
        ("LDAP_URL", "ldap://127.0.0.1:1".into()),
        ("LDAP_BIND_DN", "cn=admin,dc=example,dc=com".into()),
        ("LDAP_BIND_PASSWORD", "secret".into()),
        ("LDAP_BASE_DN", "dc=example,dc=com".into()),
    ]))
}

/// The findings for a config's mapping: `mapping` is the `mapping:` section.
fn findings_for(mapping: &str) -> Vec<Finding> {
    let text = format!(
        "auth:
  tokens:
    - name: entra
      secret:
        env: SCIM_BRIDGE_TOKEN
target:
  ldap:
    urls:
      - env: LDAP_URL
    bind_dn:
      env: LDAP_BIND_DN
    bind_password:
      env: LDAP_BIND_PASSWORD
    base:
      env: LDAP_BASE_DN
{mapping}"
    );
    let config =
        crate::config::parse(&text, "test.yaml", &env()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let target = config.target.expect("a target");
    check_mapping(&target.mapping, &openldap())
}

fn messages(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(ToString::to_string).collect()
}

/// Users as inetOrgPerson, named by uid, with cn and sn always set.
const USERS: &str = "mapping:
  users:
    dn: 'uid={userName},ou=people,{base}'
    object_classes: [inetOrgPerson, organizationalPerson, person, top]
    attributes:
      cn:
        source: displayName
        required: true
      sn:
        source: name.familyName
        default: '-'
";

#[test]
fn the_example_ldap_mapping_fits_openldaps_schema() {
    let example = include_str!("../../../../examples/ldap-openldap.yaml");
    let config = crate::config::parse(example, "examples/ldap-openldap.yaml", &env())
        .unwrap_or_else(|e| panic!("{e}"));
    let target = config.target.expect("a target");
    let findings = check_mapping(&target.mapping, &openldap());
    assert_eq!(messages(&findings), Vec::<String>::new());
}

#[test]
fn an_object_class_the_directory_does_not_know_is_an_error_with_a_suggestion() {
    let findings = findings_for(&USERS.replace("[inetOrgPerson,", "[inetOrgPersn,"));
    assert_eq!(
        messages(&findings),
        [
            "error: users: object class 'inetOrgPersn' is not in the directory's schema (did you mean 'inetOrgPerson'?)"
        ]
    );
    assert!(findings[0].is_error());
    assert_eq!(findings[0].kind, Some(ResourceKind::User));
}

#[test]
fn an_attribute_the_directory_does_not_know_is_an_error_with_a_suggestion() {
    let findings = findings_for(&format!(
        "{USERS}      telephonNumber:\n        source: 'phoneNumbers[type eq \"work\"].value'\n"
    ));
    assert_eq!(
        messages(&findings),
        [
            "error: users: attribute 'telephonNumber' is not in the directory's schema (did you mean 'telephoneNumber'?)"
        ]
    );
}

#[test]
fn an_attribute_no_class_of_the_entry_allows_is_an_error() {
    let findings = findings_for(
        "mapping:
  groups:
    dn: 'cn={displayName},ou=groups,{base}'
    object_classes: [groupOfNames]
    attributes:
      mail:
        source: displayName
    members:
      placeholder: 'cn=placeholder,{base}'
",
    );
    assert_eq!(
        messages(&findings),
        [
            "error: groups: attribute 'mail' is not allowed by the object classes 'groupOfNames' (nor their superclasses)"
        ]
    );
}

#[test]
fn attributes_allowed_by_a_superclass_are_allowed() {
    // telephoneNumber comes from person, title from organizationalPerson; only
    // inetOrgPerson is listed.
    let findings = findings_for(&format!(
        "{}      telephoneNumber:\n        source: title\n      title:\n        source: title\n",
        USERS.replace(
            "[inetOrgPerson, organizationalPerson, person, top]",
            "[inetOrgPerson]"
        )
    ));
    assert_eq!(messages(&findings), Vec::<String>::new());
}

#[test]
fn a_must_attribute_of_a_superclass_the_mapping_does_not_set_is_an_error() {
    let findings = findings_for(
        "mapping:
  users:
    dn: 'uid={userName},ou=people,{base}'
    object_classes: [inetOrgPerson]
    attributes:
      cn:
        source: displayName
        required: true
",
    );
    assert_eq!(
        messages(&findings),
        [
            "error: users: 'sn' is required by object class 'person' but the mapping does not set it (map it under 'attributes:' or name the entry by it in 'dn:')"
        ]
    );
}

#[test]
fn a_must_attribute_mapped_from_a_value_that_may_be_absent_is_a_warning() {
    let findings = findings_for(&USERS.replace("        default: '-'\n", ""));
    assert_eq!(
        messages(&findings),
        [
            "warning: users: 'sn' is required by object class 'person' but its mapping may give no value, and the directory then refuses the entry; make it 'required: true' or give it a 'default:'"
        ]
    );
    assert!(!findings[0].is_error());
}

#[test]
fn a_constant_fills_a_must_attribute() {
    let findings = findings_for(&USERS.replace(
        "        source: name.familyName\n        default: '-'\n",
        "        value: unknown\n",
    ));
    assert_eq!(messages(&findings), Vec::<String>::new());
}

#[test]
fn the_dns_naming_attribute_fills_a_must_attribute() {
    // groupOfNames needs cn: the DN's cn={displayName} gives it.
    let findings = findings_for(
        "mapping:
  groups:
    dn: 'cn={displayName},ou=groups,{base}'
    object_classes: [groupOfNames, top]
    attributes:
      description:
        source: displayName
    members:
      attribute: member
      placeholder: 'cn=placeholder,{base}'
",
    );
    assert_eq!(messages(&findings), Vec::<String>::new());
}

#[test]
fn an_alias_fills_a_must_attribute_and_is_allowed() {
    let findings = findings_for(
        "mapping:
  users:
    dn: 'uid={userName},ou=people,{base}'
    object_classes: [inetOrgPerson]
    attributes:
      commonName:
        source: displayName
        required: true
      SURNAME:
        source: userName
        required: true
",
    );
    assert_eq!(messages(&findings), Vec::<String>::new());
}

#[test]
fn a_must_member_attribute_without_a_placeholder_is_a_warning() {
    let findings = findings_for(
        "mapping:
  groups:
    dn: 'cn={displayName},ou=groups,{base}'
    object_classes: [groupOfNames, top]
    attributes:
      cn:
        source: displayName
    members:
      attribute: member
",
    );
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].severity, Severity::Warning);
    assert!(
        findings[0].message.contains("set members.placeholder"),
        "{findings:?}"
    );
}

#[test]
fn a_members_attribute_the_classes_do_not_allow_is_an_error() {
    // uniqueMember on groupOfNames: not allowed, and groupOfNames' member is not set.
    let findings = findings_for(
        "mapping:
  groups:
    dn: 'cn={displayName},ou=groups,{base}'
    object_classes: [groupOfNames, top]
    attributes:
      cn:
        source: displayName
    members:
      attribute: uniqueMember
      placeholder: 'cn=placeholder,{base}'
",
    );
    assert_eq!(
        messages(&findings),
        [
            "error: groups: the members attribute 'uniqueMember' is not allowed by the object classes 'groupOfNames', 'top' (nor their superclasses)",
            "error: groups: 'member' is required by object class 'groupOfNames' but the mapping does not set it (map it under 'attributes:' or name the entry by it in 'dn:')",
        ]
    );
}

#[test]
fn an_unknown_members_attribute_and_an_unknown_naming_attribute_are_errors() {
    let findings = findings_for(
        "mapping:
  groups:
    dn: 'gcn={displayName},ou=groups,{base}'
    object_classes: [extensibleObject, groupOfNames, top]
    attributes:
      cn:
        source: displayName
        required: true
    members:
      attribute: membr
      placeholder: 'cn=placeholder,{base}'
",
    );
    let all = messages(&findings).join("\n");
    assert!(
        all.contains(
            "error: groups: the DN's naming attribute 'gcn' is not in the directory's schema"
        ),
        "{all}"
    );
    assert!(
        all.contains("error: groups: the members attribute 'membr' is not in the directory's schema (did you mean 'member'?)"),
        "{all}"
    );
}

#[test]
fn memberuid_on_a_posix_group_is_allowed_and_its_gidnumber_is_required() {
    let findings = findings_for(
        "mapping:
  groups:
    dn: 'cn={displayName},ou=groups,{base}'
    object_classes: [posixGroup, top]
    attributes:
      description:
        source: displayName
    members:
      attribute: memberUid
",
    );
    assert_eq!(
        messages(&findings),
        [
            "error: groups: 'gidNumber' is required by object class 'posixGroup' but the mapping does not set it (map it under 'attributes:' or name the entry by it in 'dn:')"
        ]
    );
}

#[test]
fn extensible_object_allows_every_known_attribute() {
    let findings = findings_for(
        "mapping:
  groups:
    dn: 'cn={displayName},ou=groups,{base}'
    object_classes: [groupOfNames, extensibleObject]
    attributes:
      mail:
        source: displayName
      uidNumber:
        source: displayName
      noSuchThing:
        source: displayName
    members:
      placeholder: 'cn=placeholder,{base}'
",
    );
    assert_eq!(
        messages(&findings),
        ["error: groups: attribute 'noSuchThing' is not in the directory's schema"]
    );
}

#[test]
fn operational_attributes_need_no_class() {
    // ppolicy's lock time is not in any class: the directory keeps it itself.
    let findings = findings_for(&format!(
        "{USERS}      pwdAccountLockedTime:\n        source: title\n"
    ));
    assert_eq!(messages(&findings), Vec::<String>::new());
}

#[test]
fn classes_without_a_structural_one_are_a_warning() {
    let findings = findings_for(
        "mapping:
  groups:
    dn: 'cn={displayName},ou=groups,{base}'
    object_classes: [extensibleObject, top]
    attributes:
      description:
        source: displayName
",
    );
    assert_eq!(
        messages(&findings),
        [
            "warning: groups: none of the object classes 'extensibleObject', 'top' is structural; the directory refuses an entry without a structural class (add one, e.g. inetOrgPerson or groupOfNames)"
        ]
    );
}

#[test]
fn two_unrelated_structural_classes_are_a_warning() {
    let findings = findings_for(
        "mapping:
  groups:
    dn: 'cn={displayName},ou=groups,{base}'
    object_classes: [groupOfNames, organizationalUnit]
    attributes:
      ou:
        source: displayName
        required: true
    members:
      placeholder: 'cn=placeholder,{base}'
",
    );
    assert_eq!(
        messages(&findings),
        [
            "warning: groups: the structural object classes 'groupOfNames', 'organizationalUnit' are not one chain of superclasses; directories such as OpenLDAP refuse such entries"
        ]
    );
}

#[test]
fn an_unknown_class_stops_the_allowed_check_but_not_the_must_check() {
    // The misspelt class might allow mail; person's sn is still required.
    let findings = findings_for(
        "mapping:
  users:
    dn: 'uid={userName},ou=people,{base}'
    object_classes: [inetOrgPersn, person]
    attributes:
      cn:
        source: displayName
        required: true
      mail:
        source: userName
",
    );
    let all = messages(&findings);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].contains("'inetOrgPersn' is not in the directory's schema"));
    assert!(all[1].contains("'sn' is required by object class 'person'"));
}

#[test]
fn findings_print_their_severity_and_the_mapping_they_are_about() {
    let f = Finding::new(Severity::Warning, None, "odd".into());
    assert_eq!(f.to_string(), "warning: directory schema: odd");
    let f = Finding::new(Severity::Error, Some(ResourceKind::Group), "bad".into());
    assert_eq!(f.to_string(), "error: groups: bad");
}

#[test]
fn an_attribute_the_directory_computes_cannot_be_mapped() {
    let findings = findings_for(&format!(
        "{USERS}      memberOf:\n        source: 'groups.value'\n"
    ));
    assert_eq!(
        messages(&findings),
        [
            "error: users: attribute 'memberOf' is computed by the directory (NO-USER-MODIFICATION, e.g. memberOf) and cannot be written; remove it from the mapping"
        ]
    );
}

#[test]
fn a_sam_account_name_that_can_exceed_20_characters_is_an_error_on_ad() {
    let long = findings_for(&format!(
        "{USERS}      sAMAccountName:\n        source: userName\n"
    ));
    assert!(
        messages(&long).iter().any(|m| m.contains(
            "attribute 'sAMAccountName' can be of any length; Active Directory refuses more than 20"
        )),
        "{long:?}"
    );
    let cased = findings_for(&format!(
        "{USERS}      sAMAccountName:\n        expr: 'ToLower(Left([userName], 20))'\n"
    ));
    assert!(
        messages(&cased)
            .iter()
            .any(|m| m.contains("'sAMAccountName' can be 60 characters long")),
        "{cased:?}"
    );
    let example = include_str!("../../../../examples/ldap-ad.yaml");
    let start = example.find("\nmapping:").expect("a mapping section") + 1;
    let fits = findings_for(&example[start..]);
    assert!(
        !messages(&fits)
            .iter()
            .any(|m| m.contains("sAMAccountName' can")),
        "the AD example's expressions stay within 20: {fits:?}"
    );
}
