"""Realistic resources of the first-class types, as an NCD clinic would send them."""

from __future__ import annotations

from typing import Any

HEALTH_ID = "https://healthid.abdm.gov.in"


def patient(health_id: str = "91-5006-4247-3341", family: str = "Sharma") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{
            "type": {"coding": [{"system": "https://nrces.in/ndhm/fhir/r4/CodeSystem/ndhm-identifier-type-code",
                                 "code": "HIN"}]},
            "system": HEALTH_ID, "value": health_id}],
        "name": [{"text": f"Asha {family}", "family": family, "given": ["Asha"]}],
        "gender": "female",
        "birthDate": "1980-09-05",
        "telecom": [{"system": "phone", "value": "+919800000000"}],
        "address": [{"city": "Samastipur", "state": "Bihar", "country": "IN"}],
    }


def practitioner() -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": "https://doctor.abdm.gov.in", "value": "71-1234-5678-9012"}],
        "name": [{"text": "Dr. Ravi Kumar", "family": "Kumar", "given": ["Ravi"], "prefix": ["Dr."]}],
        "gender": "male",
    }


def organization() -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": "https://facility.abdm.gov.in", "value": "IN0510000183"}],
        "name": "Primary Health Centre Samastipur",
        "active": True,
    }


def encounter(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": "2026-01-10T09:00:00+05:30", "end": "2026-01-10T09:30:00+05:30"},
    }


def blood_pressure(patient_id: str, systolic: float = 142, diastolic: float = 91) -> dict[str, Any]:
    def component(code: str, display: str, value: float) -> dict[str, Any]:
        return {"code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                  "code": "mm[Hg]"}}

    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-01-10T09:10:00+05:30",
        "component": [component("8480-6", "Systolic blood pressure", systolic),
                      component("8462-4", "Diastolic blood pressure", diastolic)],
    }


def medication_request(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "386864001",
                                                  "display": "Amlodipine"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": "2026-01-10",
        "dosageInstruction": [{"text": "5 mg once daily"}],
    }


def first_class(patient_id: str) -> list[dict[str, Any]]:
    return [patient(), practitioner(), organization(), encounter(patient_id), blood_pressure(patient_id),
            medication_request(patient_id)]
