"""A discharge summary as the NRCeS FHIR IG for ABDM (DischargeSummaryRecord) lays it out: a document
Bundle whose first entry is the Composition, SNOMED CT section codes, ABHA / HPR / HFR identifiers,
entries linked by ``urn:uuid:`` fullUrls."""

from __future__ import annotations

from typing import Any

NRCES = "https://nrces.in/ndhm/fhir/r4/StructureDefinition"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ID_TYPE = "https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-identifier-type-code"

PATIENT = "1efe03bf-9506-40ba-bc9f-80b0d5045afe"
PRACTITIONER = "3bc96820-c7c9-4f59-900d-6b0ed1fa558e"
ORGANIZATION = "68ff0f24-3698-4877-b0ab-26e046fbec24"
ENCOUNTER = "d1c6ef7c-7ab6-4a2c-8d3b-2a3f5b1f9f10"
COMPOSITION = "e6e8a16a-54f4-4e7c-9d2c-3b5b0b8f7c21"
HEALTH_ID = "22-7225-4829-5255"


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _ref(uuid: str, display: str | None = None) -> dict[str, Any]:
    reference: dict[str, Any] = {"reference": f"urn:uuid:{uuid}"}
    if display:
        reference["display"] = display
    return reference


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def _section(code: str, title: str, entries: list[str]) -> dict[str, Any]:
    return {"title": title, "code": _coding(SNOMED, code, title), "entry": [_ref(e) for e in entries]}


def discharge_summary(bundle_id: str = "discharge-summary-01", identifier: str = "b2d7e3a0-4a1c-4e5e-9f3e-0c0d5e6f7a8b",
                      health_id: str = HEALTH_ID, patient_id: str = PATIENT) -> dict[str, Any]:
    """The whole document; ids are fixed so a test can address each resource."""
    subject = _ref(patient_id, "Asha Sharma")
    ids = {name: f"{name}-{bundle_id}" for name in (
        "complaint", "history", "temperature", "hemoglobin", "report", "procedure", "medication", "careplan",
        "allergy", "family", "document")}
    patient = {
        "resourceType": "Patient", "id": patient_id,
        "meta": {"versionId": "1", "profile": [f"{NRCES}/Patient"]},
        "identifier": [{"type": _coding(ID_TYPE, "HIN", "Health Identification Number"),
                        "system": "https://healthid.abdm.gov.in", "value": health_id}],
        "name": [{"text": "Asha Sharma"}],
        "telecom": [{"system": "phone", "value": "+919800000000", "use": "home"}],
        "gender": "female", "birthDate": "1980-09-05",
    }
    practitioner = {
        "resourceType": "Practitioner", "id": PRACTITIONER,
        "meta": {"versionId": "1", "profile": [f"{NRCES}/Practitioner"]},
        "identifier": [{"type": _coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MD", "Medical License number"),
                        "system": "https://doctor.abdm.gov.in", "value": "71-1234-5678-9012"}],
        "name": [{"text": "Dr. Ravi Kumar"}],
    }
    organization = {
        "resourceType": "Organization", "id": ORGANIZATION,
        "meta": {"profile": [f"{NRCES}/Organization"]},
        "identifier": [{"type": _coding("http://terminology.hl7.org/CodeSystem/v2-0203", "PRN", "Provider number"),
                        "system": "https://facility.abdm.gov.in", "value": "IN0510000183"}],
        "name": "District Hospital Samastipur",
        "telecom": [{"system": "phone", "value": "+916274000000", "use": "work"}],
    }
    encounter = {
        "resourceType": "Encounter", "id": ENCOUNTER,
        "meta": {"profile": [f"{NRCES}/Encounter"]},
        "identifier": [{"system": "https://ndhm.in", "value": "S100"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP",
                  "display": "inpatient encounter"},
        "subject": subject,
        "period": {"start": "2026-01-10T09:00:00+05:30", "end": "2026-01-15T10:00:00+05:30"},
        "hospitalization": {"dischargeDisposition": _coding("http://terminology.hl7.org/CodeSystem/discharge-disposition",
                                                            "home", "Home")},
    }
    complaint = {
        "resourceType": "Condition", "id": ids["complaint"], "meta": {"profile": [f"{NRCES}/Condition"]},
        "clinicalStatus": _coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
        "code": _coding(SNOMED, "267036007", "Dyspnea"), "subject": subject,
        "onsetDateTime": "2026-01-08",
    }
    history = {
        "resourceType": "Condition", "id": ids["history"], "meta": {"profile": [f"{NRCES}/Condition"]},
        "clinicalStatus": _coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
        "code": _coding(SNOMED, "38341003", "Hypertensive disorder"), "subject": subject,
        "recordedDate": "2019-04-02",
    }
    temperature = {
        "resourceType": "Observation", "id": ids["temperature"], "meta": {"profile": [f"{NRCES}/ObservationVitalSigns"]},
        "status": "final",
        "category": [_coding("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs")],
        "code": _coding(LOINC, "8310-5", "Body temperature"), "subject": subject,
        "effectiveDateTime": "2026-01-10T09:30:00+05:30",
        "valueQuantity": {"value": 37.2, "unit": "C", "system": UCUM, "code": "Cel"},
    }
    hemoglobin = {
        "resourceType": "Observation", "id": ids["hemoglobin"], "meta": {"profile": [f"{NRCES}/Observation"]},
        "status": "final", "code": _coding(LOINC, "718-7", "Hemoglobin [Mass/volume] in Blood"), "subject": subject,
        "effectiveDateTime": "2026-01-11T08:00:00+05:30",
        "valueQuantity": {"value": 11.4, "unit": "g/dL", "system": UCUM, "code": "g/dL"},
        "referenceRange": [{"low": {"value": 12, "unit": "g/dL", "system": UCUM, "code": "g/dL"},
                            "high": {"value": 15.5, "unit": "g/dL", "system": UCUM, "code": "g/dL"}}],
    }
    report = {
        "resourceType": "DiagnosticReport", "id": ids["report"], "meta": {"profile": [f"{NRCES}/DiagnosticReportLab"]},
        "status": "final", "code": _coding(LOINC, "58410-2", "CBC panel - Blood by Automated count"),
        "subject": subject, "issued": "2026-01-11T10:00:00+05:30",
        "performer": [_ref(ORGANIZATION, "District Hospital Samastipur")],
        "result": [_ref(ids["hemoglobin"])],
        "conclusion": "Mild anaemia",
    }
    procedure = {
        "resourceType": "Procedure", "id": ids["procedure"], "meta": {"profile": [f"{NRCES}/Procedure"]},
        "status": "completed", "code": _coding(SNOMED, "40701008", "Echocardiography"), "subject": subject,
        "performedDateTime": "2026-01-11T11:00:00+05:30",
    }
    medication = {
        "resourceType": "MedicationRequest", "id": ids["medication"], "meta": {"profile": [f"{NRCES}/MedicationRequest"]},
        "status": "active", "intent": "order",
        "medicationCodeableConcept": _coding(SNOMED, "386864001", "Amlodipine"),
        "subject": subject, "authoredOn": "2026-01-15", "requester": _ref(PRACTITIONER, "Dr. Ravi Kumar"),
        "dosageInstruction": [{"text": "5 mg once daily", "timing": {"repeat": {"frequency": 1, "period": 1,
                                                                                 "periodUnit": "d"}}}],
    }
    careplan = {
        "resourceType": "CarePlan", "id": ids["careplan"], "meta": {"profile": [f"{NRCES}/CarePlan"]},
        "status": "active", "intent": "plan", "title": "Follow-up", "subject": subject,
        "period": {"start": "2026-01-15", "end": "2026-02-15"},
        "description": "Review in the outpatient clinic after two weeks; low-salt diet.",
    }
    allergy = {
        "resourceType": "AllergyIntolerance", "id": ids["allergy"], "meta": {"profile": [f"{NRCES}/AllergyIntolerance"]},
        "clinicalStatus": _coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
        "code": _coding(SNOMED, "227493005", "Cashew nuts"), "patient": subject,
        "recorder": _ref(PRACTITIONER),
    }
    family = {
        "resourceType": "FamilyMemberHistory", "id": ids["family"], "meta": {"profile": [f"{NRCES}/FamilyMemberHistory"]},
        "status": "completed", "patient": subject,
        "relationship": _coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "FTH", "father"),
        "condition": [{"code": _coding(SNOMED, "22298006", "Myocardial infarction")}],
    }
    document = {
        "resourceType": "DocumentReference", "id": ids["document"], "meta": {"profile": [f"{NRCES}/DocumentReference"]},
        "status": "current", "docStatus": "final", "type": _coding(SNOMED, "373942005", "Discharge summary"),
        "subject": subject,
        "content": [{"attachment": {"contentType": "application/pdf", "language": "en-IN",
                                    "data": "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4=",
                                    "title": "Discharge summary", "creation": "2026-01-15T10:30:00+05:30"}}],
    }
    composition = {
        "resourceType": "Composition", "id": COMPOSITION,
        "meta": {"versionId": "1", "profile": [f"{NRCES}/DischargeSummaryRecord"]},
        "language": "en-IN",
        "identifier": {"system": "https://ndhm.in/phr", "value": "645bb0c3-ff7e-4123-bef5-3852a4784813"},
        "status": "final",
        "type": _coding(SNOMED, "373942005", "Discharge summary"),
        "subject": subject,
        "encounter": _ref(ENCOUNTER),
        "date": "2026-01-15T10:30:00+05:30",
        "author": [_ref(PRACTITIONER, "Dr. Ravi Kumar")],
        "title": "Discharge Summary",
        "custodian": _ref(ORGANIZATION, "District Hospital Samastipur"),
        "section": [
            _section("422843007", "Chief complaint section", [ids["complaint"]]),
            _section("425044008", "Physical exam section", [ids["temperature"]]),
            _section("722446000", "Allergy record", [ids["allergy"]]),
            _section("1003642006", "Past medical history section", [ids["history"]]),
            _section("422432008", "Family history section", [ids["family"]]),
            _section("721981007", "Diagnostic studies report", [ids["report"]]),
            _section("1003606003", "Medication history section", [ids["medication"]]),
            _section("1003640003", "History of past procedure section", [ids["procedure"]]),
            _section("734163000", "Care plan", [ids["careplan"]]),
            _section("373942005", "Discharge summary", [ids["document"]]),
        ],
    }
    resources = [composition, patient, practitioner, organization, encounter, complaint, temperature, allergy, history,
                 family, report, hemoglobin, medication, procedure, careplan, document]
    return {
        "resourceType": "Bundle", "id": bundle_id,
        "meta": {"versionId": "1", "lastUpdated": "2026-01-15T10:30:00.000+05:30",
                 "profile": [f"{NRCES}/DocumentBundle"],
                 "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "V",
                               "display": "very restricted"}]},
        "identifier": {"system": "http://hip.in", "value": identifier},
        "type": "document",
        "timestamp": "2026-01-15T10:30:00+05:30",
        "entry": [_entry(r) for r in resources],
    }
