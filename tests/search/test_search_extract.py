"""Index extraction on realistic resources: each parameter type, normalization and date precision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_server.search.extract import CURRENCY_SYSTEM, IndexExtractor
from fhir_server.search.index_values import (
    DATE_MAX,
    DATE_MIN,
    CompositeValue,
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.search.registry import SearchRegistry

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@pytest.fixture(scope="module")
def extractor() -> IndexExtractor:
    return IndexExtractor(SearchRegistry.load())


def ms(utc: str) -> int:
    return round(datetime.fromisoformat(utc).replace(tzinfo=UTC).timestamp() * 1000)


def of(values: list[IndexValue], param: str) -> list[IndexValue]:
    return [v for v in values if v.param == param]


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "versionId": "3",
        "lastUpdated": "2024-03-01T10:00:00.123Z",
        "profile": ["http://example.org/fhir/StructureDefinition/ncd-patient"],
        "tag": [{"system": "http://example.org/tags", "code": "ncd", "display": "NCD programme"}],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "source": "http://clinic.example.org/emr",
    },
    "identifier": [{
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                 "text": "Medical Record"},
        "system": "http://hospital.example.org/mrn", "value": "MRN-001",
    }],
    "active": True,
    "name": [{"use": "official", "family": "Müller", "given": ["José", "Ana  Maria"], "prefix": ["Dr."]},
             {"text": "Pepe Müller"}],
    "telecom": [{"system": "phone", "value": "+91 98765 43210", "use": "mobile"},
                {"system": "email", "value": "jose@example.org"}],
    "gender": "male",
    "birthDate": "1980-05",
    "deceasedBoolean": False,
    "address": [{"line": ["12 MG Road", "Flat 3"], "city": "Bengaluru", "district": "Bangalore Urban",
                 "state": "Karnataka", "postalCode": "560001", "country": "IN"}],
    "generalPractitioner": [{"reference": "Practitioner/pr1/_history/2"}],
    "managingOrganization": {"reference": "https://fhir.example.org/r4/Organization/org1"},
}

BLOOD_PRESSURE: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp1",
    "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                              "code": "vital-signs"}]}],
    "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}],
             "text": "Blood pressure"},
    "subject": {"reference": "Patient/p1"},
    "performer": [{"reference": "#contained-practitioner"},
                  {"identifier": {"system": "https://doctor.ndhm.gov.in", "value": "DOC-9"}}],
    "effectiveDateTime": "2024-02-28T09:30:00+05:30",
    "component": [
        {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic"}]},
         "valueQuantity": {"value": 142, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic"}]},
         "valueQuantity": {"value": 91.5, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
    ],
}


def test_resource_level_parameters_come_from_id_and_meta(extractor: IndexExtractor) -> None:
    values = extractor.extract(PATIENT)
    assert of(values, "_id") == [TokenValue("_id", None, "p1")]
    assert of(values, "_lastUpdated") == [DateValue("_lastUpdated", 1709287200123, 1709287200124)]
    assert of(values, "_tag") == [TokenValue("_tag", "http://example.org/tags", "ncd", "ncd programme")]
    assert of(values, "_security") == [
        TokenValue("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")]
    assert of(values, "_profile") == [UriValue("_profile", "http://example.org/fhir/StructureDefinition/ncd-patient")]
    assert of(values, "_source") == [UriValue("_source", "http://clinic.example.org/emr")]


def test_human_name_gives_one_folded_string_per_part(extractor: IndexExtractor) -> None:
    names = of(extractor.extract(PATIENT), "name")
    assert [(v.normalized, v.exact) for v in names if isinstance(v, StringValue)] == [
        ("muller", "Müller"), ("jose", "José"), ("ana maria", "Ana  Maria"), ("dr.", "Dr."),
        ("pepe muller", "Pepe Müller")]
    assert {v.normalized for v in of(extractor.extract(PATIENT), "family")} == {"muller"}
    assert {v.normalized for v in of(extractor.extract(PATIENT), "given")} == {"jose", "ana maria"}


def test_address_gives_each_part_and_the_specific_address_params(extractor: IndexExtractor) -> None:
    values = extractor.extract(PATIENT)
    assert {v.exact for v in of(values, "address")} == {
        "12 MG Road", "Flat 3", "Bengaluru", "Bangalore Urban", "Karnataka", "560001", "IN"}
    assert of(values, "address-city") == [StringValue("address-city", "bengaluru", "Bengaluru")]
    assert of(values, "address-postalcode") == [StringValue("address-postalcode", "560001", "560001")]


def test_contact_points_index_their_value_as_a_token_code(extractor: IndexExtractor) -> None:
    values = extractor.extract(PATIENT)
    assert of(values, "phone") == [TokenValue("phone", None, "+91 98765 43210")]
    assert of(values, "email") == [TokenValue("email", None, "jose@example.org")]
    assert len(of(values, "telecom")) == 2


def test_codes_and_booleans_are_tokens_without_system(extractor: IndexExtractor) -> None:
    values = extractor.extract(PATIENT)
    assert of(values, "gender") == [TokenValue("gender", None, "male")]
    assert of(values, "active") == [TokenValue("active", None, "true")]


def test_deceased_follows_the_fhirpath_of_the_official_definition(extractor: IndexExtractor) -> None:
    assert of(extractor.extract(PATIENT), "deceased") == [TokenValue("deceased", None, "false")]
    dead = {**PATIENT, "deceasedDateTime": "2023-01-01"}
    del dead["deceasedBoolean"]
    assert of(extractor.extract(dead), "deceased") == [TokenValue("deceased", None, "true")]
    unknown = {k: v for k, v in PATIENT.items() if k != "deceasedBoolean"}
    assert of(extractor.extract(unknown), "deceased") == [TokenValue("deceased", None, "false")]


def test_identifier_gives_a_token_and_an_of_type_composite(extractor: IndexExtractor) -> None:
    values = extractor.extract(PATIENT)
    assert of(values, "identifier") == [
        TokenValue("identifier", "http://hospital.example.org/mrn", "MRN-001", "medical record")]
    assert of(values, "identifier:of-type") == [CompositeValue("identifier:of-type", (
        TokenValue("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203", "MR"),
        TokenValue("identifier:of-type", None, "MRN-001")))]


def test_birth_date_month_precision_covers_the_whole_month(extractor: IndexExtractor) -> None:
    assert of(extractor.extract(PATIENT), "birthdate") == [
        DateValue("birthdate", ms("1980-05-01T00:00:00"), ms("1980-06-01T00:00:00"))]


def test_relative_reference_with_version_keeps_type_and_id(extractor: IndexExtractor) -> None:
    assert of(extractor.extract(PATIENT), "general-practitioner") == [
        ReferenceValue("general-practitioner", "Practitioner", "pr1")]


def test_absolute_reference_keeps_url_type_and_id(extractor: IndexExtractor) -> None:
    assert of(extractor.extract(PATIENT), "organization") == [
        ReferenceValue("organization", "Organization", "org1", "https://fhir.example.org/r4/Organization/org1")]


def test_blood_pressure_components_give_code_value_composites(extractor: IndexExtractor) -> None:
    values = extractor.extract(BLOOD_PRESSURE)
    composites = of(values, "component-code-value-quantity")
    assert composites == [
        CompositeValue("component-code-value-quantity", (
            TokenValue("component-code", LOINC, "8480-6"),
            QuantityValue("component-value-quantity", 142.0, UCUM, "mm[Hg]", "mmHg"))),
        CompositeValue("component-code-value-quantity", (
            TokenValue("component-code", LOINC, "8462-4"),
            QuantityValue("component-value-quantity", 91.5, UCUM, "mm[Hg]", "mmHg"))),
    ]
    assert len(of(values, "combo-code-value-quantity")) == 2
    assert of(values, "code-value-quantity") == []  # the panel itself has no value


def test_code_value_quantity_pairs_the_observation_code_with_its_value(extractor: IndexExtractor) -> None:
    """Only the codings pair up: a composite's token matches by system and code, never by text."""
    glucose = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": LOINC, "code": "2339-0", "display": "Glucose [Mass/volume]"},
                                   {"system": "http://snomed.info/sct", "code": "33747003"}],
                        "text": "Glucose"},
               "valueQuantity": {"value": 6.3, "unit": "mmol/l", "system": UCUM, "code": "mmol/L"}}
    quantity = QuantityValue("value-quantity", 6.3, UCUM, "mmol/L", "mmol/l")
    assert of(extractor.extract(glucose), "code-value-quantity") == [
        CompositeValue("code-value-quantity", (TokenValue("code", LOINC, "2339-0"), quantity)),
        CompositeValue("code-value-quantity", (TokenValue("code", "http://snomed.info/sct", "33747003"), quantity)),
    ]


def test_codeable_concept_text_is_a_text_only_token(extractor: IndexExtractor) -> None:
    assert of(extractor.extract(BLOOD_PRESSURE), "code") == [
        TokenValue("code", LOINC, "85354-9", "blood pressure panel"),
        TokenValue("code", None, None, "blood pressure")]


def test_date_time_with_offset_is_converted_to_utc_at_second_precision(extractor: IndexExtractor) -> None:
    low = ms("2024-02-28T04:00:00")
    assert of(extractor.extract(BLOOD_PRESSURE), "date") == [DateValue("date", low, low + 1000)]


def test_contained_references_are_skipped_and_identifiers_feed_the_identifier_index(
        extractor: IndexExtractor) -> None:
    values = extractor.extract(BLOOD_PRESSURE)
    assert of(values, "performer") == []
    assert of(values, "performer:identifier") == [
        TokenValue("performer:identifier", "https://doctor.ndhm.gov.in", "DOC-9")]
    assert of(values, "patient") == [ReferenceValue("patient", "Patient", "p1")]
    assert of(values, "subject") == [ReferenceValue("subject", "Patient", "p1")]


def test_patient_parameter_keeps_only_references_to_patients(extractor: IndexExtractor) -> None:
    group_observation = {**BLOOD_PRESSURE, "subject": {"reference": "Group/g1"}}
    values = extractor.extract(group_observation)
    assert of(values, "patient") == []
    assert of(values, "subject") == [ReferenceValue("subject", "Group", "g1")]


def test_timing_indexes_the_outer_limits_of_its_events(extractor: IndexExtractor) -> None:
    timed = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
             "effectiveTiming": {"event": ["2024-01-05", "2024-01-02T08:00:00Z", "2024-01-03"]}}
    assert of(extractor.extract(timed), "date") == [
        DateValue("date", ms("2024-01-02T08:00:00"), ms("2024-01-06T00:00:00"))]


@pytest.mark.parametrize(("value", "low", "high"), [
    ("1980", "1980-01-01T00:00:00", "1981-01-01T00:00:00"),
    ("1980-02", "1980-02-01T00:00:00", "1980-03-01T00:00:00"),
    ("1980-02-29", "1980-02-29T00:00:00", "1980-03-01T00:00:00"),
    ("2024-02-28T09:30:15Z", "2024-02-28T09:30:15", "2024-02-28T09:30:16"),
    ("2024-02-28T09:30:15-03:00", "2024-02-28T12:30:15", "2024-02-28T12:30:16"),
    ("2024-02-28T09:30:15.5+00:00", "2024-02-28T09:30:15.500", "2024-02-28T09:30:15.600"),
    ("2024-02-28T09:30:15.123456Z", "2024-02-28T09:30:15.123", "2024-02-28T09:30:15.124"),
])
def test_date_values_cover_their_precision(extractor: IndexExtractor, value: str, low: str, high: str) -> None:
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "recordedDate": value}
    assert of(extractor.extract(condition), "recorded-date") == [DateValue("recorded-date", ms(low), ms(high))]


def test_encounter_period_and_length(extractor: IndexExtractor) -> None:
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                 "subject": {"reference": "Patient/p1"},
                 "period": {"start": "2024-03-01T09:00:00+05:30", "end": "2024-03-01T09:20:00+05:30"},
                 "length": {"value": 20, "unit": "min", "system": UCUM, "code": "min"}}
    values = extractor.extract(encounter)
    assert of(values, "date") == [DateValue("date", ms("2024-03-01T03:30:00"), ms("2024-03-01T03:50:01"))]
    assert of(values, "length") == [QuantityValue("length", 20.0, UCUM, "min", "min")]
    assert of(values, "class") == [TokenValue("class", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB")]


def test_open_ended_period_reaches_the_end_of_time(extractor: IndexExtractor) -> None:
    encounter = {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                 "period": {"start": "2024-03-01"}}
    assert of(extractor.extract(encounter), "date") == [DateValue("date", ms("2024-03-01T00:00:00"), DATE_MAX)]
    ended = {**encounter, "period": {"end": "2024-03-01"}}
    assert of(extractor.extract(ended), "date") == [DateValue("date", DATE_MIN, ms("2024-03-02T00:00:00"))]


def test_medication_request_indexes_code_or_reference_by_choice_type(extractor: IndexExtractor) -> None:
    coded = {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
             "medicationCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "325242002",
                                                       "display": "Metformin 500mg tablet"}]},
             "subject": {"reference": "Patient/p1"}, "authoredOn": "2024-03-01",
             "requester": {"reference": "Practitioner/pr1"}}
    values = extractor.extract(coded)
    assert of(values, "code") == [TokenValue("code", "http://snomed.info/sct", "325242002", "metformin 500mg tablet")]
    assert of(values, "medication") == []
    assert of(values, "intent") == [TokenValue("intent", None, "order")]
    assert of(values, "authoredon") == [DateValue("authoredon", ms("2024-03-01T00:00:00"), ms("2024-03-02T00:00:00"))]
    assert of(values, "requester") == [ReferenceValue("requester", "Practitioner", "pr1")]
    referenced = {**coded, "medicationReference": {"reference": "Medication/med1"}}
    del referenced["medicationCodeableConcept"]
    values = extractor.extract(referenced)
    assert of(values, "code") == []
    assert of(values, "medication") == [ReferenceValue("medication", "Medication", "med1")]


def test_condition_onset_choices_feed_date_quantity_and_string_params(extractor: IndexExtractor) -> None:
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
                 "code": {"text": "Type 2 diabetes"},
                 "onsetAge": {"value": 45, "unit": "years", "system": UCUM, "code": "a"},
                 "abatementString": "After  weight loss"}
    values = extractor.extract(condition)
    assert of(values, "onset-age") == [QuantityValue("onset-age", 45.0, UCUM, "a", "years")]
    assert of(values, "onset-date") == []
    assert of(values, "abatement-string") == [
        StringValue("abatement-string", "after weight loss", "After  weight loss")]
    assert of(values, "code") == [TokenValue("code", None, None, "type 2 diabetes")]


def test_organization_name_address_and_part_of(extractor: IndexExtractor) -> None:
    organization = {"resourceType": "Organization", "id": "org1", "name": "Primary Health Centre Anekal",
                    "alias": ["PHC Anekal"], "address": [{"city": "Anekal", "state": "Karnataka"}],
                    "partOf": {"reference": "Organization/district-1"},
                    "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                          "code": "prov"}]}]}
    values = extractor.extract(organization)
    assert {v.exact for v in of(values, "name")} == {"Primary Health Centre Anekal", "PHC Anekal"}
    assert of(values, "address-city") == [StringValue("address-city", "anekal", "Anekal")]
    assert of(values, "partof") == [ReferenceValue("partof", "Organization", "district-1")]
    assert of(values, "type") == [
        TokenValue("type", "http://terminology.hl7.org/CodeSystem/organization-type", "prov")]


def test_practitioner_name_identifier_and_email(extractor: IndexExtractor) -> None:
    practitioner = {"resourceType": "Practitioner", "id": "pr1",
                    "identifier": [{"system": "https://doctor.ndhm.gov.in", "value": "DOC-9"}],
                    "name": [{"family": "Rao", "given": ["Lakshmi"], "prefix": ["Dr"]}],
                    "telecom": [{"system": "email", "value": "lakshmi@phc.example.org"}]}
    values = extractor.extract(practitioner)
    assert {v.exact for v in of(values, "name")} == {"Rao", "Lakshmi", "Dr"}
    assert of(values, "identifier") == [TokenValue("identifier", "https://doctor.ndhm.gov.in", "DOC-9")]
    assert of(values, "identifier:of-type") == []
    assert of(values, "email") == [TokenValue("email", None, "lakshmi@phc.example.org")]


def test_canonical_references_keep_the_url_without_version(extractor: IndexExtractor) -> None:
    response = {"resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": "http://example.org/Questionnaire/ncd-screening|2.0"}
    assert of(extractor.extract(response), "questionnaire") == [
        ReferenceValue("questionnaire", None, None, "http://example.org/Questionnaire/ncd-screening")]


def test_money_is_a_quantity_in_the_currency_system(extractor: IndexExtractor) -> None:
    invoice = {"resourceType": "Invoice", "status": "issued", "totalNet": {"value": 250.5, "currency": "INR"}}
    assert of(extractor.extract(invoice), "totalnet") == [QuantityValue("totalnet", 250.5, CURRENCY_SYSTEM, "INR")]


def test_numbers_are_number_values(extractor: IndexExtractor) -> None:
    assessment = {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/p1"},
                  "prediction": [{"probabilityDecimal": 0.17}]}
    assert of(extractor.extract(assessment), "probability") == [NumberValue("probability", 0.17)]


def test_uri_parameters_give_uri_values(extractor: IndexExtractor) -> None:
    value_set = {"resourceType": "ValueSet", "status": "active", "url": "http://example.org/ValueSet/ncd"}
    assert of(extractor.extract(value_set), "url") == [UriValue("url", "http://example.org/ValueSet/ncd")]


def test_bundle_composition_references_the_first_entry(extractor: IndexExtractor) -> None:
    document = {"resourceType": "Bundle", "type": "document",
                "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}},
                          {"resource": {"resourceType": "Patient", "id": "p1"}}]}
    assert of(extractor.extract(document), "composition") == [ReferenceValue("composition", "Composition", "c1")]


def test_identical_values_are_indexed_once(extractor: IndexExtractor) -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Rao"}, {"family": "Rao"}]}
    assert of(extractor.extract(patient), "family") == [StringValue("family", "rao", "Rao")]


def test_unreadable_values_are_skipped_not_fatal(extractor: IndexExtractor) -> None:
    patient = {"resourceType": "Patient", "birthDate": "not-a-date", "name": [{"given": [None, "Ravi"]}],
               "generalPractitioner": [{"reference": "not a reference"}]}
    values = extractor.extract(patient)
    assert of(values, "birthdate") == []
    assert of(values, "given") == [StringValue("given", "ravi", "Ravi")]
    assert of(values, "general-practitioner") == []


def test_types_without_own_parameters_still_get_resource_parameters(extractor: IndexExtractor) -> None:
    citation = {"resourceType": "Citation", "id": "c1", "status": "active"}
    assert extractor.extract(citation) == [TokenValue("_id", None, "c1")]


def test_composite_components_may_read_the_whole_resource(extractor: IndexExtractor) -> None:
    sequence = {"resourceType": "MolecularSequence", "coordinateSystem": 0,
                "referenceSeq": {"chromosome": {"coding": [{"system": "http://hl7.org/fhir/chromosome-human",
                                                            "code": "1"}]}},
                "variant": [{"start": 22125503, "end": 22125504}]}
    assert of(extractor.extract(sequence), "chromosome-variant-coordinate") == [
        CompositeValue("chromosome-variant-coordinate", (
            TokenValue("chromosome", "http://hl7.org/fhir/chromosome-human", "1"),
            NumberValue("variant-start", 22125503.0), NumberValue("variant-end", 22125504.0)))]
