use super::{MaskedSchema, Origin, Schema};
use crate::mask::MaskPlan;
use crate::policy::Glob;

const CUSTOMERS: u32 = 16384;
const CONTACTS: u32 = 16400;
const CONTACTS2: u32 = 16410;
const PG_CLASS: u32 = 1259;

fn plan() -> MaskPlan {
    MaskPlan::new(vec![Glob::new("email"), Glob::new("ssn")], vec![])
}

/// customers(id, name, email); contacts = SELECT id, email AS contact, upper(name) AS shout
/// FROM customers; contacts2 = SELECT contact FROM contacts.
fn schema() -> Schema {
    let mut s = Schema::default();
    for (attnum, name) in [(1, "id"), (2, "name"), (3, "email")] {
        s.add_column(CUSTOMERS, "customers", false, attnum, name);
    }
    for (attnum, name) in [(1, "id"), (2, "contact"), (3, "shout")] {
        s.add_column(CONTACTS, "contacts", true, attnum, name);
    }
    s.set_view_origins(CONTACTS, &[Some((CUSTOMERS, 1)), Some((CUSTOMERS, 3)), None]);
    s.add_view_read(CONTACTS, (CUSTOMERS, 1));
    s.add_view_read(CONTACTS, (CUSTOMERS, 2));
    s.add_view_read(CONTACTS, (CUSTOMERS, 3));
    s.add_column(CONTACTS2, "contacts2", true, 1, "contact");
    s.set_view_origins(CONTACTS2, &[Some((CONTACTS, 2))]);
    s.add_view_read(CONTACTS2, (CONTACTS, 2));
    s.add_column(PG_CLASS, "pg_class", false, 2, "relname");
    s
}

fn origin(s: &Schema, m: &MaskedSchema, id: (u32, i16)) -> Origin {
    m.origin(s, id)
}

#[test]
fn a_view_column_passing_a_masked_column_through_under_another_name_is_masked() {
    let s = schema();
    let m = s.masked(&plan());
    assert_eq!(origin(&s, &m, (CUSTOMERS, 3)), Origin::Masked);
    assert_eq!(origin(&s, &m, (CUSTOMERS, 2)), Origin::Clear);
    assert_eq!(origin(&s, &m, (CONTACTS, 2)), Origin::Masked, "contact is email");
    assert_eq!(origin(&s, &m, (CONTACTS2, 1)), Origin::Masked, "a view of a view");
    assert_eq!(origin(&s, &m, (CONTACTS, 1)), Origin::Clear, "id passes id through");
    assert!(m.is_derived_name("contact"));
    assert!(!m.is_derived_name("id"));
}

#[test]
fn a_computed_view_column_is_masked_when_its_view_reads_a_masked_column() {
    let s = schema();
    let m = s.masked(&plan());
    assert_eq!(origin(&s, &m, (CONTACTS, 3)), Origin::Masked);
    let mut clean = Schema::default();
    clean.add_column(CUSTOMERS, "customers", false, 2, "name");
    clean.add_column(CUSTOMERS, "customers", false, 3, "email");
    clean.add_column(CONTACTS, "shouts", true, 1, "shout");
    clean.set_view_origins(CONTACTS, &[None]);
    clean.add_view_read(CONTACTS, (CUSTOMERS, 2));
    let m = clean.masked(&plan());
    assert_eq!(origin(&clean, &m, (CONTACTS, 1)), Origin::Clear, "upper(name) reads nothing masked");
}

#[test]
fn a_whole_row_read_or_a_masked_function_taints_a_views_computed_columns() {
    let mut s = schema();
    s.add_column(CONTACTS + 1, "rows", true, 1, "r");
    s.set_view_origins(CONTACTS + 1, &[None]);
    s.add_view_read(CONTACTS + 1, (CUSTOMERS, 0));
    s.add_function(7001, "public", "emails", "SELECT string_agg(email, ',') FROM customers");
    s.add_function(7002, "public", "wrap", "BEGIN RETURN public.emails(); END");
    s.add_function(7003, "public", "dyn", "BEGIN EXECUTE 'SELECT 1'; END");
    s.add_function(7004, "public", "add", "SELECT $1 + $2");
    s.add_column(CONTACTS + 2, "calls", true, 1, "c");
    s.set_view_origins(CONTACTS + 2, &[None]);
    s.add_view_call(CONTACTS + 2, 7002);
    let m = s.masked(&plan());
    assert_eq!(origin(&s, &m, (CONTACTS + 1, 1)), Origin::Masked);
    assert_eq!(origin(&s, &m, (CONTACTS + 2, 1)), Origin::Masked, "calls a function calling one that reads email");
    assert!(m.function_reads_masked("emails") && m.function_reads_masked("public.emails"));
    assert!(m.function_reads_masked("wrap"), "through another function");
    assert!(m.function_reads_masked("dyn"), "dynamic SQL can read anything");
    assert!(!m.function_reads_masked("add"));
}

#[test]
fn a_generated_column_copying_a_masked_one_is_masked() {
    let mut s = schema();
    s.add_column(CUSTOMERS, "customers", false, 4, "contact_copy");
    s.add_generated(CUSTOMERS, 4, 3);
    let m = s.masked(&plan());
    assert_eq!(origin(&s, &m, (CUSTOMERS, 4)), Origin::Masked);
    assert!(m.is_derived_name("contact_copy"));
}

#[test]
fn computed_unknown_and_newer_relations_are_unknown_and_system_columns_go_by_name() {
    let s = schema();
    let m = s.masked(&plan());
    assert_eq!(origin(&s, &m, (0, 0)), Origin::Computed);
    assert_eq!(origin(&s, &m, (16999, 1)), Origin::Unknown, "created after the catalog was read");
    assert_eq!(origin(&s, &m, (PG_CLASS, 2)), Origin::Clear);
    assert_eq!(origin(&s, &m, (CUSTOMERS, -6)), Origin::Clear, "tableoid");
    let none = s.masked(&MaskPlan::default());
    assert_eq!(origin(&s, &none, (CUSTOMERS, 3)), Origin::Clear, "no column rule, nothing masked");
}

#[test]
fn a_view_whose_query_could_not_be_described_is_judged_by_what_it_reads() {
    let mut s = schema();
    s.add_column(CONTACTS + 3, "opaque", true, 1, "id");
    s.add_view_read(CONTACTS + 3, (CUSTOMERS, 3));
    let m = s.masked(&plan());
    assert_eq!(origin(&s, &m, (CONTACTS + 3, 1)), Origin::Masked);
}
