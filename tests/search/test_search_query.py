"""Query parsing (search.html, R4): values, modifiers, prefixes, chains, _has, control parameters,
and every way a query can be rejected."""

from __future__ import annotations

import pytest

from fhir_server.errors import FhirError
from fhir_server.search.plan import (
    ChainAnyCriterion,
    ChainCriterion,
    CompositeMatch,
    Criterion,
    HasCriterion,
    Include,
    MissingMatch,
    Prefix,
    RangeMatch,
    ReferenceMatch,
    SearchPlan,
    SortKey,
    StringMatch,
    TokenMatch,
    TokenTextMatch,
    UriMatch,
)
from fhir_server.search.query import parse_conditional, parse_search
from fhir_server.search.registry import SearchRegistry
from fhir_server.search.ucum import CANONICAL_SYSTEM

REGISTRY = SearchRegistry.load()
DAY = 86_400_000
Y2020 = 1_577_836_800_000  # 2020-01-01T00:00:00Z


def plan(resource_type: str | None, query: list[tuple[str, str]], *, strict: bool = False,
         base_url: str | None = None) -> SearchPlan:
    return parse_search(resource_type, query, REGISTRY, strict=strict, default_count=20, max_count=100,
                        base_url=base_url)


def only(resource_type: str | None, name: str, value: str, **kwargs: object) -> Criterion:
    criteria = plan(resource_type, [(name, value)], **kwargs).criteria  # type: ignore[arg-type]
    assert len(criteria) == 1
    criterion = criteria[0]
    assert isinstance(criterion, Criterion)
    return criterion


def rejected(resource_type: str | None, query: list[tuple[str, str]], *, strict: bool = False) -> FhirError:
    with pytest.raises(FhirError) as caught:
        plan(resource_type, query, strict=strict)
    assert caught.value.status == 400
    return caught.value


def diagnostics(error: FhirError) -> str:
    return error.issues[0].diagnostics


# --- tokens, strings, escapes ---------------------------------------------------------------------

@pytest.mark.parametrize(("value", "match"), [
    ("8480-6", TokenMatch(None, "8480-6", match_system=False)),
    ("|8480-6", TokenMatch(None, "8480-6", match_system=True)),
    ("http://loinc.org|8480-6", TokenMatch("http://loinc.org", "8480-6", match_system=True)),
    ("http://loinc.org|", TokenMatch("http://loinc.org", None, match_system=True, match_code=False)),
])
def test_token_forms(value: str, match: TokenMatch) -> None:
    assert only("Observation", "code", value).matches == (match,)


def test_comma_is_or_and_repetition_is_and() -> None:
    criteria = plan("Observation", [("code", "a,b"), ("code", "c")]).criteria
    assert [c.matches for c in criteria if isinstance(c, Criterion)] == [
        (TokenMatch(None, "a", False), TokenMatch(None, "b", False)), (TokenMatch(None, "c", False),)]


def test_escaped_separators_are_literal() -> None:
    assert only("Observation", "code", r"a\,b,sys\|x|c\$d\\").matches == (
        TokenMatch(None, "a,b", False), TokenMatch("sys|x", "c$d\\", True))


def test_string_modes_and_normalization() -> None:
    assert only("Patient", "name", "Müller  Ana").matches == (StringMatch("muller ana", "prefix"),)
    assert only("Patient", "name:exact", "Müller").matches == (StringMatch("Müller", "exact"),)
    assert only("Patient", "name:contains", "ÜLL").matches == (StringMatch("ull", "contains"),)


def test_token_text_and_not_modifiers() -> None:
    assert only("Observation", "code:text", "Blood Pressure").matches == (TokenTextMatch("blood pressure"),)
    negated = only("Observation", "status:not", "cancelled")
    assert negated.negate and negated.matches == (TokenMatch(None, "cancelled", False),)


def test_missing_modifier() -> None:
    assert only("Patient", "birthdate:missing", "true").matches == (MissingMatch(True),)
    assert only("Patient", "gender:missing", "false").matches == (MissingMatch(False),)


def test_identifier_of_type_targets_the_derived_composite() -> None:
    criterion = only("Patient", "identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|123")
    assert (criterion.param, criterion.param_type) == ("identifier:of-type", "composite")
    assert criterion.matches == (CompositeMatch((
        TokenMatch("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", True),
        TokenMatch(None, "123", False)), ("token", "token")),)


def test_id_and_last_updated_are_ordinary_parameters() -> None:
    assert only("Patient", "_id", "p1,p2").matches == (TokenMatch(None, "p1", False), TokenMatch(None, "p2", False))
    assert only("Patient", "_lastUpdated", "gt2020").matches == (RangeMatch(Prefix.GT, Y2020, Y2020 + 366 * DAY),)


def test_empty_values_are_ignored() -> None:
    assert plan("Patient", [("name", ""), ("gender", ",")]).criteria == []


# --- dates, numbers, quantities ------------------------------------------------------------------

@pytest.mark.parametrize(("value", "match"), [
    ("2020", RangeMatch(Prefix.EQ, Y2020, Y2020 + 366 * DAY)),
    ("ge2020-01", RangeMatch(Prefix.GE, Y2020, Y2020 + 31 * DAY)),
    ("lt2020-01-01", RangeMatch(Prefix.LT, Y2020, Y2020 + DAY)),
    ("2020-01-01T05:30:00+05:30", RangeMatch(Prefix.EQ, Y2020, Y2020 + 1000)),
    ("2020-01-01T05:30:00 05:30", RangeMatch(Prefix.EQ, Y2020, Y2020 + 1000)),
    ("sa2020-01-01T00:00Z", RangeMatch(Prefix.SA, Y2020, Y2020 + 60_000)),
    ("ap2020-01-01T00:00:00", RangeMatch(Prefix.AP, Y2020, Y2020 + 1000)),
])
def test_dates_become_ranges_at_their_precision(value: str, match: RangeMatch) -> None:
    assert only("Patient", "birthdate", value).matches == (match,)


@pytest.mark.parametrize(("value", "prefix", "low", "high"), [
    ("100", Prefix.EQ, 99.5, 100.5),
    ("100.0", Prefix.EQ, 99.95, 100.05),
    ("1e2", Prefix.EQ, 50.0, 150.0),
    ("1.00e2", Prefix.EQ, 99.5, 100.5),
    ("gt-0.5", Prefix.GT, -0.55, -0.45),
    ("ne0", Prefix.NE, -0.5, 0.5),
])
def test_numbers_become_ranges_at_their_significant_figures(value: str, prefix: Prefix, low: float,
                                                             high: float) -> None:
    (match,) = only("RiskAssessment", "probability", value).matches
    assert isinstance(match, RangeMatch)
    assert (match.prefix, match.low, match.high) == (prefix, pytest.approx(low), pytest.approx(high))


@pytest.mark.parametrize(("value", "system", "code"), [
    ("5.4", None, None),
    ("5.4|http://example.org/units|mg", "http://example.org/units", "mg"),
    ("5.4||mg", None, "mg"),
    ("5.4|http://unitsofmeasure.org|mEq/L", "http://unitsofmeasure.org", "mEq/L"),  # not UCUM syntax
])
def test_quantity_forms(value: str, system: str | None, code: str | None) -> None:
    criterion = only("Observation", "value-quantity", value)
    assert criterion.param == "value-quantity"
    assert criterion.matches == (RangeMatch(Prefix.EQ, pytest.approx(5.35), pytest.approx(5.45), system, code),)


@pytest.mark.parametrize(("value", "match"), [
    ("5.4|http://unitsofmeasure.org|mg", RangeMatch(Prefix.EQ, 5.35e-6, 5.45e-6, CANONICAL_SYSTEM, "kilogram")),
    ("gt5.4|http://unitsofmeasure.org|mg", RangeMatch(Prefix.GT, 5.4e-6, 5.4e-6, CANONICAL_SYSTEM, "kilogram")),
    ("ap100|http://unitsofmeasure.org|g", RangeMatch(Prefix.AP, 0.09, 0.11, CANONICAL_SYSTEM, "kilogram")),
    ("le37|http://unitsofmeasure.org|Cel", RangeMatch(Prefix.LE, 310.15, 310.15, CANONICAL_SYSTEM, "kelvin")),
])
def test_ucum_quantities_are_searched_in_canonical_units(value: str, match: RangeMatch) -> None:
    criterion = only("Observation", "value-quantity", value)
    assert (criterion.param, criterion.matches) == ("value-quantity:canonical", (match,))


def test_composite_parts_are_parsed_by_component_type() -> None:
    criterion = only("Observation", "component-code-value-quantity", "http://loinc.org|8480-6$gt140")
    assert criterion.matches == (CompositeMatch((
        TokenMatch("http://loinc.org", "8480-6", True), RangeMatch(Prefix.GT, 139.5, 140.5)),
        ("token", "quantity")),)


# --- references and uris -------------------------------------------------------------------------

ME = "http://me.org/fhir/"


@pytest.mark.parametrize(("name", "value", "match"), [
    ("subject", "123", ReferenceMatch(None, "123", local_base=ME)),
    ("subject", "Patient/123", ReferenceMatch("Patient", "123", local_base=ME)),
    ("subject", "Patient/123/_history/4", ReferenceMatch("Patient", "123", local_base=ME)),
    ("subject:Patient", "123", ReferenceMatch("Patient", "123", local_base=ME)),
    ("subject", "http://other.org/fhir/Patient/123", ReferenceMatch(None, None, "http://other.org/fhir/Patient/123")),
    ("subject", "http://me.org/fhir/Patient/123", ReferenceMatch("Patient", "123", local_base=ME)),
])
def test_reference_forms(name: str, value: str, match: ReferenceMatch) -> None:
    """A type and id also match absolute references on this server, never another server's."""
    assert only("Observation", name, value, base_url="http://me.org/fhir/").matches == (match,)


def test_canonical_reference_search_drops_the_version() -> None:
    assert only("QuestionnaireResponse", "questionnaire", "http://x.org/Questionnaire/q|2").matches == (
        ReferenceMatch(None, None, "http://x.org/Questionnaire/q"),)


def test_reference_identifier_modifier_targets_the_derived_token_index() -> None:
    criterion = only("Observation", "subject:identifier", "https://healthid.ndhm.gov.in|12-3456")
    assert (criterion.param, criterion.param_type) == ("subject:identifier", "token")
    assert criterion.matches == (TokenMatch("https://healthid.ndhm.gov.in", "12-3456", True),)


def test_uri_modifiers() -> None:
    assert only("ValueSet", "url", "http://x.org/vs").matches == (UriMatch("http://x.org/vs", "exact"),)
    assert only("ValueSet", "url:below", "http://x.org/").matches == (UriMatch("http://x.org/", "below"),)
    assert only("ValueSet", "url:above", "http://x.org/vs/1").matches == (UriMatch("http://x.org/vs/1", "above"),)


# --- chains and _has ----------------------------------------------------------------------------

def test_chain_with_type_modifier() -> None:
    (criterion,) = plan("Observation", [("subject:Patient.name", "peter")]).criteria
    assert criterion == ChainCriterion("Observation", "subject", "Patient",
                                       Criterion("Patient", "name", "string", (StringMatch("peter"),)))


def test_chain_without_modifier_uses_the_only_target_with_the_parameter() -> None:
    (criterion,) = plan("Observation", [("patient.birthdate", "1980")]).criteria
    assert isinstance(criterion, ChainCriterion) and criterion.target_type == "Patient"


def test_chain_without_modifier_searches_every_target_with_the_parameter() -> None:
    (criterion,) = plan("Observation", [("subject.name", "peter")]).criteria
    assert criterion == ChainAnyCriterion("Observation", "subject", tuple(
        ChainCriterion("Observation", "subject", target, Criterion(target, "name", "string", (StringMatch("peter"),)))
        for target in ("Location", "Patient")))
    (criterion,) = plan("Observation", [("subject.identifier", "urn:mrn|1")]).criteria
    assert isinstance(criterion, ChainAnyCriterion)
    assert [a.target_type for a in criterion.alternatives] == ["Device", "Group", "Location", "Patient"]
    assert {a.inner for a in criterion.alternatives} == {
        Criterion(target, "identifier", "token", (TokenMatch("urn:mrn", "1", True),))
        for target in ("Device", "Group", "Location", "Patient")}


def test_untyped_chains_nest_and_leave_out_targets_without_the_rest_of_the_chain() -> None:
    (criterion,) = plan("Observation", [("subject.organization.name", "PHC")]).criteria
    organization = Criterion("Organization", "name", "string", (StringMatch("phc"),))
    assert criterion == ChainAnyCriterion("Observation", "subject", tuple(
        ChainCriterion("Observation", "subject", target, ChainCriterion(target, "organization", "Organization",
                                                                        organization))
        for target in ("Device", "Location", "Patient")))
    # RelatedPerson has a patient parameter too, but the Patient it points at has no type
    (criterion,) = plan("Observation", [("performer.patient.type", "x")], strict=True).criteria
    assert isinstance(criterion, ChainCriterion) and criterion.target_type == "CareTeam"
    assert isinstance(criterion.inner, ChainCriterion) and criterion.inner.target_type == "Group"


def test_an_untyped_chain_no_target_of_which_has_the_parameter_is_unknown_and_bad_values_are_400() -> None:
    assert plan("Observation", [("subject.nickname", "x")]).ignored == ["subject.nickname"]
    error = rejected("Observation", [("subject.nickname", "x")], strict=True)
    assert "no target of subject has a parameter 'nickname'" in diagnostics(error)
    assert plan("Observation", [("subject.name", "")]).criteria == []
    assert "not a token" in diagnostics(rejected("Observation", [("subject.identifier", "a|b|c")]))


def test_an_untyped_chain_through_an_inline_resource_searches_every_target_there() -> None:
    (criterion,) = plan("Bundle", [("composition.subject.identifier", "urn:mrn|1")]).criteria
    assert isinstance(criterion, ChainAnyCriterion)
    assert (criterion.resource_type, criterion.param) == ("Bundle", "composition.subject")
    assert {(a.resource_type, a.param) for a in criterion.alternatives} == {("Bundle", "composition.subject")}
    assert {"Patient", "Group", "Practitioner"} <= {a.target_type for a in criterion.alternatives}


def test_chains_nest_over_several_levels() -> None:
    (criterion,) = plan("Observation", [("subject:Patient.organization.name:exact", "PHC")]).criteria
    assert criterion == ChainCriterion("Observation", "subject", "Patient", ChainCriterion(
        "Patient", "organization", "Organization",
        Criterion("Organization", "name", "string", (StringMatch("PHC", "exact"),))))


def test_has_selects_by_referring_resources_and_nests() -> None:
    (criterion,) = plan("Patient", [("_has:Observation:patient:code", "8480-6")]).criteria
    assert criterion == HasCriterion("Patient", "Observation", "patient",
                                     Criterion("Observation", "code", "token", (TokenMatch(None, "8480-6", False),)))
    (nested,) = plan("Patient", [("_has:Observation:patient:_has:AuditEvent:entity:agent", "Practitioner/1")]).criteria
    assert isinstance(nested, HasCriterion) and isinstance(nested.inner, HasCriterion)
    assert nested.inner.inner == Criterion("AuditEvent", "agent", "reference", (ReferenceMatch("Practitioner", "1"),))


# --- control parameters --------------------------------------------------------------------------

def test_count_is_clamped_and_zero_allowed() -> None:
    assert plan("Patient", []).count == 20
    assert plan("Patient", [("_count", "500")]).count == 100
    assert plan("Patient", [("_count", "0")]).count == 0


def test_paging_total_summary_elements() -> None:
    result = plan("Patient", [("_cursor", "abc"), ("_total", "none"), ("_summary", "count"),
                              ("_elements", "name, birthDate, Observation.value[x]")])
    assert (result.cursor, result.total, result.summary) == ("abc", "none", "count")
    assert result.elements == ("name", "birthDate", "Observation.value[x]")
    assert plan("Patient", [("_summary", "false")]).summary is None


def test_summary_and_elements_cannot_be_combined() -> None:
    assert "cannot be combined" in diagnostics(rejected("Patient", [("_summary", "true"), ("_elements", "name")]))
    assert plan("Patient", [("_summary", "count"), ("_elements", "name")]).summary == "count"


def test_sort_keys_are_typed_and_may_descend() -> None:
    assert plan("Observation", [("_sort", "-date,status,_lastUpdated")]).sort == [
        SortKey("date", "date", True), SortKey("status", "token"), SortKey("_lastUpdated", "date")]


def test_includes_and_revincludes() -> None:
    result = plan("Observation", [("_include", "Observation:patient,Observation:performer:Practitioner"),
                                  ("_include:iterate", "Patient:organization"),
                                  ("_revinclude", "Provenance:target"), ("_include", "*")])
    assert result.includes == [
        Include("Observation", "patient"), Include("Observation", "performer", "Practitioner"),
        Include("Patient", "organization", iterate=True), Include("Provenance", "target", reverse=True),
        Include("*", "*")]


def test_format_and_pretty_are_left_to_the_api() -> None:
    result = plan("Patient", [("_format", "json"), ("_pretty", "true")])
    assert result.criteria == [] and result.ignored == []


def test_system_search_uses_type_list_and_shared_parameters() -> None:
    result = plan(None, [("_type", "Patient,Practitioner"), ("name", "rao"), ("_lastUpdated", "ge2020")])
    assert result.resource_types == ("Patient", "Practitioner")
    assert [(c.resource_type, c.param) for c in result.criteria if isinstance(c, Criterion)] == [
        ("Resource", "name"), ("Resource", "_lastUpdated")]
    everything = plan(None, [("_id", "x")])
    assert len(everything.resource_types) > 140


def test_unknown_parameters_are_ignored_or_rejected_when_strict() -> None:
    assert plan("Patient", [("nickname", "x")]).ignored == ["nickname"]
    assert plan(None, [("_type", "Patient,Observation"), ("name", "x")]).ignored == ["name"]
    error = rejected("Patient", [("nickname", "x")], strict=True)
    assert "nickname" in diagnostics(error) and error.issues[0].code == "not-supported"
    assert "not supported" in diagnostics(rejected("Location", [("near", "1|2|3|km")], strict=True))


# --- conditional interactions --------------------------------------------------------------------

def test_conditional_query_is_url_decoded_with_plus_as_space() -> None:
    criteria = parse_conditional("Patient", "identifier=http%3A%2F%2Fx.org%7C1&name=Ana+Maria", REGISTRY).criteria
    assert [c.matches for c in criteria if isinstance(c, Criterion)] == [
        (TokenMatch("http://x.org", "1", True),), (StringMatch("ana maria"),)]
    (birth,) = parse_conditional("Patient", "?birthdate=2020-01-01T05:30:00+05:30", REGISTRY).criteria
    assert isinstance(birth, Criterion) and birth.matches == (RangeMatch(Prefix.EQ, Y2020, Y2020 + 1000),)


@pytest.mark.parametrize("query", ["", "_count=1", "name=", "nickname=x"])
def test_conditional_query_needs_a_known_criterion(query: str) -> None:
    with pytest.raises(FhirError) as caught:
        parse_conditional("Patient", query, REGISTRY)
    assert caught.value.status == 400


# --- rejections ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("resource_type", "name", "value", "mentions"), [
    ("Patient", "birthdate", "yesterday", "not a date"),
    ("Patient", "birthdate", "xx2020", "not a date"),
    ("Patient", "birthdate", "2020-02-30", "not a date"),
    ("Patient", "birthdate", "2020-01-01T10:00:00+0530", "not a date"),
    ("RiskAssessment", "probability", "ab5", "not a number"),
    ("RiskAssessment", "probability", "1,0x5", "not a number"),
    ("RiskAssessment", "probability", "NaN", "not a number"),
    ("Observation", "value-quantity", "5.4|http://unitsofmeasure.org", "not a quantity"),
    ("Observation", "value-quantity", "five||mg", "not a number"),
    ("Observation", "code", "a|b|c", "not a token"),
    ("Observation", "code", "|", "not a token"),
    ("Patient", "identifier:of-type", "MR|123", "identifier type"),
    ("Patient", "gender:missing", "maybe", "true or false"),
    ("Patient", "name:foo", "x", "unknown modifier"),
    ("Patient", "name:text", "x", ":text is not supported"),
    ("Observation", "code:above", "x", ":above is not supported"),
    ("Patient", "birthdate:exact", "2020", ":exact is not supported"),
    ("Observation", "subject:Spaceship", "1", "unknown modifier"),
    ("Observation", "subject:Medication", "1", "not a target type"),
    ("Observation", "subject:Patient", "Group/1", "not a Patient reference"),
    ("Observation", "subject", "Medication/1", "not a target type"),
    ("Observation", "subject", "a/b/c", "not a reference"),
    ("Observation", "component-code-value-quantity", "8480-6", "needs 2 parts"),
    ("Observation", "code.name", "x", "only reference parameters"),
    ("Observation", "subject:missing.name", "x", "not a target type"),
    ("Patient", "_has:Observation", "x", "_has:Type:reference:parameter"),
    ("Patient", "_has:Spaceship:patient:code", "x", "unknown resource type"),
    ("Patient", "_has:Observation:code:code", "x", "no reference parameter"),
    ("Patient", "_has:Encounter:practitioner:status", "x", "cannot refer to Patient"),
    ("Patient", "_count", "ten", "non-negative integer"),
    ("Patient", "_count", "-1", "non-negative integer"),
    ("Patient", "_count:max", "1", "takes no modifier"),
    ("Patient", "_elements", "name.family", "invalid element"),
    ("Patient", "_elements", "Spaceship.name", "invalid element"),
    ("Patient", "_sort", "nickname", "cannot sort"),
    ("Observation", "_sort", "-component-code-value-quantity", "cannot sort"),
    ("Patient", "_total", "some", "not one of"),
    ("Patient", "_summary", "yes", "not one of"),
    ("Patient", "_elements", "name,1x", "invalid element"),
    ("Observation", "_include", "Observation", "Type:param"),
    ("Observation", "_include", "Spaceship:patient", "unknown resource type"),
    ("Observation", "_include", "Observation:code", "no reference parameter"),
    ("Observation", "_include", "Observation:subject:Medication", "not a target"),
    ("Observation", "_include:deep", "Observation:subject", "unknown modifier"),
])
def test_invalid_queries_are_bad_requests_naming_the_parameter(resource_type: str, name: str, value: str,
                                                               mentions: str) -> None:
    error = rejected(resource_type, [(name, value)])
    assert mentions in diagnostics(error)
    assert name.split(":")[0].split(".")[0] in diagnostics(error)


def test_unknown_types_are_rejected() -> None:
    assert "Spaceship" in diagnostics(rejected("Spaceship", []))
    assert "Spaceship" in diagnostics(rejected(None, [("_type", "Patient,Spaceship")]))
