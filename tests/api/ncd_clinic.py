"""A small NCD clinic, as a primary health centre in Bihar would record it, for the HTTP search tests.

Every resource has a label (``"asha"``, ``"bp-asha-jan"``); ``Clinic.labels`` turns a searchset Bundle
back into labels, so a test states its expectation as a set of labels. The ``clinic`` fixture
(``tests/api/conftest.py``) loads it once per backend for the whole session: tests must not change it. Times are Indian Standard
Time (+05:30) as the clinic's devices record them, which puts some of them on a different UTC day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient


LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
HEALTH_ID = "https://healthid.abdm.gov.in"
MRN = "https://phc-samastipur.example.in/mrn"
DOCTOR_ID = "https://doctor.abdm.gov.in"
LEGACY = "https://legacy.example.in/reg"
NCD_TAGS = "https://ncd.example.in/tags"
NDHM_PATIENT = "https://nrces.in/ndhm/fhir/r4/StructureDefinition/Patient"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
EXTERNAL_PATIENT = "https://other-hospital.example.in/fhir/Patient/77"
CBAC = "https://ncd.example.in/fhir/Questionnaire/cbac"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"

SYSTOLIC, DIASTOLIC, BP_PANEL = "8480-6", "8462-4", "85354-9"
GLUCOSE, HBA1C = "1558-6", "4548-4"
HYPERTENSION, DIABETES = "38341003", "44054006"
AMLODIPINE, METFORMIN = "386864001", "109081006"


@dataclass
class Clinic:
    client: TestClient
    ids: dict[str, str] = field(default_factory=dict)  # label -> "Type/id"
    labels_by_key: dict[str, str] = field(default_factory=dict)  # "Type/id" -> label

    def ref(self, label: str) -> str:
        return self.ids[label]

    def id(self, label: str) -> str:
        return self.ids[label].split("/", 1)[1]

    def add(self, label: str, resource: dict[str, Any]) -> None:
        response = self.client.post(f"/{resource['resourceType']}", json=resource)
        assert response.status_code == 201, response.text
        key = f"{resource['resourceType']}/{response.json()['id']}"
        self.ids[label] = key
        self.labels_by_key[key] = label

    def search(self, query: str, **headers: str) -> dict[str, Any]:
        response = self.client.get(query, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def labels(self, bundle: dict[str, Any], mode: str = "match") -> set[str]:
        return {self.labels_by_key[f"{e['resource']['resourceType']}/{e['resource']['id']}"]
                for e in bundle.get("entry", ()) if e.get("search", {}).get("mode") == mode}

    def found(self, query: str) -> set[str]:
        """The labels of every match of ``query`` (a single page of up to 100)."""
        separator = "&" if "?" in query else "?"
        return self.labels(self.search(f"{query}{separator}_count=100"))

    def ordered(self, query: str) -> list[str]:
        bundle = self.search(query)
        return [self.labels_by_key[f"{e['resource']['resourceType']}/{e['resource']['id']}"]
                for e in bundle.get("entry", ()) if e["search"]["mode"] == "match"]

    def status(self, query: str, **headers: str) -> int:
        return self.client.get(query, headers=headers).status_code


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [coding(system, code, display)], "text": display}


def quantity(value: float, unit: str, code: str | None = None, system: str | None = UCUM) -> dict[str, Any]:
    result: dict[str, Any] = {"value": value, "unit": unit}
    if system:
        result["system"] = system
    if code:
        result["code"] = code
    return result


def patient(family: str, given: str, gender: str, birth: str, health_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "meta": {"profile": [NDHM_PATIENT]},
        "identifier": [{"type": {"coding": [coding("https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-identifier-type-code",
                                                  "HIN")]},
                        "system": HEALTH_ID, "value": health_id}],
        "name": [{"text": f"{given} {family}", "family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth,
        **extra,
    }


def blood_pressure(clinic: Clinic, subject: str, when: str, systolic: float, diastolic: float,
                   **extra: Any) -> dict[str, Any]:
    def component(code: str, display: str, value: float) -> dict[str, Any]:
        return {"code": concept(LOINC, code, display), "valueQuantity": quantity(value, "mmHg", "mm[Hg]")}

    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [coding("http://terminology.hl7.org/CodeSystem/observation-category",
                                        "vital-signs")]}],
        "code": concept(LOINC, BP_PANEL, "Blood pressure panel"),
        "subject": {"reference": clinic.ref(subject)},
        "effectiveDateTime": when,
        "component": [component(SYSTOLIC, "Systolic blood pressure", systolic),
                      component(DIASTOLIC, "Diastolic blood pressure", diastolic)],
        **extra,
    }


def lab(clinic: Clinic | None, subject: str | None, code: str, display: str, value: dict[str, Any],
        **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [coding("http://terminology.hl7.org/CodeSystem/observation-category",
                                        "laboratory")]}],
        "code": concept(LOINC, code, display),
        "valueQuantity": value,
        **extra,
    }
    if subject is not None and clinic is not None:
        resource["subject"] = {"reference": clinic.ref(subject)}
    return resource


def load(client: TestClient) -> Clinic:
    c = Clinic(client)
    c.add("org-phc", {"resourceType": "Organization", "name": "Primary Health Centre Samastipur", "active": True,
                      "identifier": [{"system": "https://facility.abdm.gov.in", "value": "IN0510000183"}]})
    c.add("org-chc", {"resourceType": "Organization", "name": "Community Health Centre Dalsinghsarai",
                      "active": False})
    c.add("dr-kumar", {"resourceType": "Practitioner", "name": [{"family": "Kumar", "given": ["Ravi"],
                                                                 "prefix": ["Dr."]}],
                       "identifier": [{"system": DOCTOR_ID, "value": "71-1234-5678-9012"}], "gender": "male"})
    c.add("nurse-devi", {"resourceType": "Practitioner", "name": [{"family": "Devi", "given": ["Sunita"]}],
                         "gender": "female"})

    c.add("asha", patient("Sharma", "Asha", "female", "1980-09-05", "91-5006-4247-3341",
                          meta={"profile": [NDHM_PATIENT], "tag": [coding(NCD_TAGS, "ncd-screened")]},
                          identifier=[
                              {"type": {"coding": [coding("https://nrces.in/ndhm/fhir/r4/CodeSystem/"
                                                          "ndhm-identifier-type-code", "HIN")]},
                               "system": HEALTH_ID, "value": "91-5006-4247-3341"},
                              {"type": {"coding": [coding(IDENTIFIER_TYPE, "MR")], "text": "Medical record number"},
                               "system": MRN, "value": "MRN-1001"}],
                          telecom=[{"system": "phone", "value": "+919800000001"}],
                          address=[{"city": "Samastipur", "state": "Bihar", "postalCode": "848101", "country": "IN"}],
                          managingOrganization={"reference": c.ref("org-phc")},
                          generalPractitioner=[{"reference": c.ref("dr-kumar")}]))
    c.add("ravi", patient("Kumar", "Ravi", "male", "1975-03-14", "91-1111-2222-3333",
                          identifier=[{"type": {"coding": [coding(IDENTIFIER_TYPE, "MR")]}, "system": MRN,
                                       "value": "MRN-1002"}],
                          address=[{"city": "Samastipur", "state": "Bihar"}],
                          managingOrganization={"reference": c.ref("org-phc")},
                          generalPractitioner=[{"reference": c.ref("dr-kumar")}]))
    c.add("zoe", patient("D'Souza", "Zoë", "female", "1962", "91-2222-3333-4444",
                         meta={"profile": [NDHM_PATIENT], "source": "https://chc-dalsinghsarai.example.in/emr"},
                         address=[{"city": "Darbhanga", "state": "Bihar"}],
                         managingOrganization={"reference": c.ref("org-chc")}))
    c.add("jose", patient("Fernandes", "José", "male", "1958-12-31", "91-3333-4444-5555",
                          name=[{"text": "Fernandes, José", "family": "Fernandes", "given": ["José"]}],
                          identifier=[{"system": LEGACY, "value": "A,B|C$D\\E"}],
                          deceasedDateTime="2026-02-01T06:00:00+05:30"))
    c.add("meena", patient("MÜLLER-RAO", "Meena", "female", "1990-01-01", "91-4444-5555-6666", active=False,
                           meta={"profile": [NDHM_PATIENT], "security": [coding(CONFIDENTIALITY, "R")]}))

    c.add("enc-asha-jan", {"resourceType": "Encounter", "status": "finished",
                           "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB"),
                           "subject": {"reference": c.ref("asha")},
                           "participant": [{"individual": {"reference": c.ref("dr-kumar")}}],
                           "serviceProvider": {"reference": c.ref("org-phc")},
                           "period": {"start": "2026-01-10T09:00:00+05:30", "end": "2026-01-10T09:30:00+05:30"}})
    c.add("enc-asha-feb", {"resourceType": "Encounter", "status": "in-progress",
                           "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB"),
                           "subject": {"reference": c.ref("asha")},
                           "period": {"start": "2026-02-14T10:00:00+05:30"}})
    c.add("enc-ravi", {"resourceType": "Encounter", "status": "finished",
                       "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "EMER"),
                       "subject": {"reference": c.ref("ravi")},
                       "period": {"start": "2025-12-31T22:00:00+05:30", "end": "2026-01-01T01:00:00+05:30"}})
    c.add("enc-zoe", {"resourceType": "Encounter", "status": "finished",
                      "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB"),
                      "subject": {"reference": c.ref("zoe")}, "period": {"end": "2025-06-30"}})

    c.add("bp-asha-jan", blood_pressure(c, "asha", "2026-01-10T09:10:00+05:30", 150, 95,
                                        encounter={"reference": c.ref("enc-asha-jan")},
                                        performer=[{"reference": c.ref("dr-kumar")}]))
    c.add("bp-asha-feb", blood_pressure(c, "asha", "2026-02-14T10:05:00+05:30", 138, 88,
                                        encounter={"reference": c.ref("enc-asha-feb")},
                                        performer=[{"reference": c.ref("nurse-devi")}]))
    c.add("bp-ravi", blood_pressure(c, "ravi", "2025-12-31T23:30:00+05:30", 128, 82,
                                    encounter={"reference": c.ref("enc-ravi")}))
    c.add("bp-zoe", blood_pressure(c, "zoe", "2025-06-15T08:00:00+05:30", 165, 100, status="amended"))
    c.add("bp-meena", blood_pressure(c, "meena", "2026-03-01", 118, 76, status="preliminary"))
    bp_external = blood_pressure(c, "asha", "2026-01-20T11:00:00+05:30", 142, 90)
    bp_external["subject"] = {"reference": EXTERNAL_PATIENT}
    c.add("bp-external", bp_external)

    c.add("glu-asha", lab(c, "asha", GLUCOSE, "Fasting glucose", quantity(182, "mg/dL", "mg/dL"),
                          effectiveDateTime="2026-01-10T08:45:00+05:30",
                          interpretation=[concept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                                  "H", "High")]))
    glu_ravi = lab(None, None, GLUCOSE, "Fasting glucose", quantity(98, "mg/dL", "mg/dL"),
                   effectiveDateTime="2026-01-05", performer=[{"identifier": {"system": DOCTOR_ID,
                                                                              "value": "71-1234-5678-9012"}}])
    glu_ravi["subject"] = {"reference": f"http://testserver/{c.ref('ravi')}"}
    c.add("glu-ravi", glu_ravi)
    c.add("glu-zoe", lab(c, "zoe", GLUCOSE, "Fasting glucose", quantity(7.8, "mmol/L", "mmol/L"),
                         effectiveDateTime="2025-06-15"))
    c.add("a1c-asha", lab(c, "asha", HBA1C, "Hemoglobin A1c", quantity(8.2, "%", "%"),
                          effectiveDateTime="2026-01-10"))
    c.add("a1c-jose", lab(c, "jose", HBA1C, "Hemoglobin A1c", quantity(6.9, "%", "%"),
                          effectivePeriod={"start": "2025-11-01", "end": "2025-11-30"}))
    c.add("a1c-meena", lab(c, "meena", HBA1C, "Hemoglobin A1c", quantity(5.6, "%", "%", system=None),
                           effectiveDateTime="2026-03-01"))

    c.add("htn-asha", {"resourceType": "Condition", "subject": {"reference": c.ref("asha")},
                       "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active",
                                                 "Active"),
                       "code": concept(SNOMED, HYPERTENSION, "Hypertensive disorder"),
                       "onsetDateTime": "2019", "recordedDate": "2026-01-10",
                       "asserter": {"reference": c.ref("dr-kumar")}})
    c.add("dm-asha", {"resourceType": "Condition", "subject": {"reference": c.ref("asha")},
                      "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active",
                                                "Active"),
                      "code": concept(SNOMED, DIABETES, "Type 2 diabetes mellitus"), "onsetDateTime": "2021-06"})
    c.add("htn-ravi", {"resourceType": "Condition", "subject": {"reference": c.ref("ravi")},
                       "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                                 "resolved", "Resolved"),
                       "code": concept(SNOMED, HYPERTENSION, "Hypertensive disorder"),
                       "abatementDateTime": "2025-05-01"})
    c.add("dm-zoe", {"resourceType": "Condition", "subject": {"reference": c.ref("zoe")},
                     "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active",
                                               "Active"),
                     "code": concept(SNOMED, DIABETES, "Type 2 diabetes mellitus"),
                     "onsetPeriod": {"start": "2015-01"}})

    def medication(label: str, subject: str, code: str, display: str, status: str, authored: str,
                   **extra: Any) -> None:
        c.add(label, {"resourceType": "MedicationRequest", "status": status, "intent": "order",
                      "medicationCodeableConcept": concept(SNOMED, code, display),
                      "subject": {"reference": c.ref(subject)}, "authoredOn": authored, **extra})

    medication("amlo-asha", "asha", AMLODIPINE, "Amlodipine", "active", "2026-01-10",
               requester={"reference": c.ref("dr-kumar")}, encounter={"reference": c.ref("enc-asha-jan")})
    medication("met-asha", "asha", METFORMIN, "Metformin", "active", "2026-01-10")
    medication("amlo-ravi", "ravi", AMLODIPINE, "Amlodipine", "stopped", "2025-06-01")

    for label, subject, probability in (("risk-asha", "asha", 0.22), ("risk-ravi", "ravi", 0.08),
                                        ("risk-zoe", "zoe", 0.305)):
        c.add(label, {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": c.ref(subject)},
                      "occurrenceDateTime": "2026-01-10",
                      "prediction": [{"outcome": {"text": "Cardiovascular event in 10 years"},
                                      "probabilityDecimal": probability}]})

    for label, url, name in (("q-cbac", CBAC, "CBAC"), ("q-cbac-2", f"{CBAC}/2024", "CBAC2024"),
                             ("q-phq9", "https://other.example.org/Questionnaire/phq9", "PHQ9")):
        c.add(label, {"resourceType": "Questionnaire", "status": "active", "url": url, "name": name})
    return c
