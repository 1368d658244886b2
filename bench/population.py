"""A deterministic synthetic population of an NCD (hypertension and diabetes) programme on an
ABDM-style network, for the search benchmark and for tests that need realistic volumes.

Everything comes from seeded ``random.Random`` instances and the lists in this file: no external
data. ``plan_population`` draws every patient, organization and practitioner (with their ids,
ABHA numbers and names) up front, so references are consistent however the resources are consumed;
``patient_resources`` then derives one patient's clinical record from a generator seeded by the
population seed and the patient's index alone, so any slice of the population is reproducible on
its own. At the default size (10,000 patients) the population holds a little over 500,000
resources, with visits spread from 2018 to 2024.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

DEFAULT_PATIENTS = 10_000
DEFAULT_SEED = 20_240_601
ORGANIZATIONS = 200
PRACTITIONERS = 400

ABHA_SYSTEM = "https://healthid.abdm.gov.in"
FACILITY_SYSTEM = "https://facility.abdm.gov.in"
HPR_SYSTEM = "https://doctor.abdm.gov.in"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ENCOUNTER_CLASS = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"

IST = timezone(timedelta(hours=5, minutes=30))
FIRST_VISIT = date(2018, 1, 1)
LAST_VISIT = date(2024, 12, 31)

MALE_GIVEN = (
    "Aarav", "Abhishek", "Aditya", "Ajay", "Akash", "Alok", "Amit", "Anand", "Anil", "Arjun", "Arun",
    "Ashok", "Balaji", "Bharat", "Chandan", "Deepak", "Dinesh", "Ganesh", "Gopal", "Hari", "Harish",
    "Imran", "Jagdish", "Karthik", "Kishore", "Krishna", "Kumar", "Mahesh", "Manoj", "Mohan", "Mukesh",
    "Murali", "Naveen", "Nikhil", "Pankaj", "Pradeep", "Prakash", "Rahul", "Rajesh", "Rakesh", "Ramesh",
    "Ravi", "Sanjay", "Santosh", "Satish", "Senthil", "Shankar", "Siddharth", "Sunil", "Suresh",
    "Tarun", "Uday", "Venkatesh", "Vijay", "Vikram", "Vinod", "Vivek", "Yogesh", "Zubair", "Farhan",
)  # fmt: skip
FEMALE_GIVEN = (
    "Aarti", "Aisha", "Anita", "Anjali", "Anusha", "Archana", "Asha", "Bhavna", "Deepa", "Divya",
    "Durga", "Fatima", "Gayatri", "Geeta", "Hema", "Indira", "Jaya", "Jyoti", "Kalpana", "Kavita",
    "Kavya", "Lakshmi", "Lata", "Madhu", "Manisha", "Meena", "Meera", "Neha", "Nirmala", "Padma",
    "Pooja", "Priya", "Radha", "Rekha", "Renu", "Rupa", "Sangeeta", "Sarita", "Savitri", "Shalini",
    "Shanti", "Shobha", "Sita", "Sneha", "Sunita", "Swati", "Tara", "Uma", "Usha", "Vandana",
    "Vani", "Vidya", "Yamuna", "Zainab", "Nazia", "Rukhsana", "Harpreet", "Gurpreet", "Mary", "Reena",
)  # fmt: skip
FAMILY = (
    "Sharma", "Verma", "Gupta", "Agarwal", "Singh", "Kumar", "Yadav", "Patel", "Shah", "Mehta",
    "Desai", "Joshi", "Kulkarni", "Deshpande", "Patil", "Pawar", "Jadhav", "Reddy", "Rao", "Naidu",
    "Iyer", "Iyengar", "Menon", "Nair", "Pillai", "Kurup", "Krishnan", "Subramanian", "Raman",
    "Murthy", "Gowda", "Hegde", "Shetty", "Bhat", "Banerjee", "Chatterjee", "Mukherjee", "Bose",
    "Das", "Ghosh", "Sen", "Dutta", "Chakraborty", "Mishra", "Tiwari", "Pandey", "Dubey", "Tripathi",
    "Shukla", "Srivastava", "Saxena", "Chauhan", "Rathore", "Thakur", "Gill", "Sandhu", "Sidhu",
    "Grewal", "Khan", "Ansari", "Qureshi", "Siddiqui", "Sheikh", "Syed", "D'Souza", "Fernandes",
    "Pereira", "Thomas", "Mathew", "Varghese", "Naik", "Sahu", "Mohanty", "Panda", "Behera", "Baruah",
    "Bora", "Gogoi", "Meena", "Choudhary", "Jain", "Bhatt", "Trivedi", "Chaudhari", "Lal", "Prasad",
)  # fmt: skip
PLACES = (
    ("Lucknow", "Lucknow", "Uttar Pradesh", "226"), ("Varanasi", "Varanasi", "Uttar Pradesh", "221"),
    ("Patna", "Patna", "Bihar", "800"), ("Gaya", "Gaya", "Bihar", "823"),
    ("Jaipur", "Jaipur", "Rajasthan", "302"), ("Udaipur", "Udaipur", "Rajasthan", "313"),
    ("Ahmedabad", "Ahmedabad", "Gujarat", "380"), ("Surat", "Surat", "Gujarat", "395"),
    ("Pune", "Pune", "Maharashtra", "411"), ("Nashik", "Nashik", "Maharashtra", "422"),
    ("Bengaluru", "Bengaluru Urban", "Karnataka", "560"), ("Mysuru", "Mysuru", "Karnataka", "570"),
    ("Chennai", "Chennai", "Tamil Nadu", "600"), ("Madurai", "Madurai", "Tamil Nadu", "625"),
    ("Kochi", "Ernakulam", "Kerala", "682"), ("Thrissur", "Thrissur", "Kerala", "680"),
    ("Hyderabad", "Hyderabad", "Telangana", "500"), ("Vijayawada", "Krishna", "Andhra Pradesh", "520"),
    ("Kolkata", "Kolkata", "West Bengal", "700"), ("Bhubaneswar", "Khordha", "Odisha", "751"),
    ("Guwahati", "Kamrup Metropolitan", "Assam", "781"), ("Bhopal", "Bhopal", "Madhya Pradesh", "462"),
    ("Ludhiana", "Ludhiana", "Punjab", "141"), ("Dehradun", "Dehradun", "Uttarakhand", "248"),
)  # fmt: skip
FACILITY_KINDS = ("Primary Health Centre", "Community Health Centre", "Urban Health and Wellness Centre",
                  "District Hospital", "Sub-District Hospital")
QUALIFICATIONS = ("MBBS", "MBBS, MD (General Medicine)", "MBBS, DNB (Family Medicine)", "MBBS, MD (Endocrinology)")

HYPERTENSION = (SNOMED, "38341003", "Hypertensive disorder, systemic arterial")
DIABETES = (SNOMED, "44054006", "Diabetes mellitus type 2")
HYPERTENSION_DRUGS = (
    ("1049611000000107", "Amlodipine 5 mg tablet", "1 tablet once daily"),
    ("318955005", "Telmisartan 40 mg tablet", "1 tablet once daily"),
    ("317796007", "Losartan 50 mg tablet", "1 tablet once daily"),
)
DIABETES_DRUGS = (
    ("325278007", "Metformin 500 mg tablet", "1 tablet twice daily after meals"),
    ("412206003", "Glimepiride 1 mg tablet", "1 tablet once daily before breakfast"),
)

HEART_RATE = ("8867-4", "Heart rate", "/min", "beats/minute")
WEIGHT = ("29463-7", "Body weight", "kg", "kg")
HEIGHT = ("8302-2", "Body height", "cm", "cm")
BMI = ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "kg/m2")
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = ("8480-6", "Systolic blood pressure", "mm[Hg]", "mmHg")
DIASTOLIC = ("8462-4", "Diastolic blood pressure", "mm[Hg]", "mmHg")
GLUCOSE = ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", "mg/dL")
FASTING_GLUCOSE = ("1558-6", "Fasting glucose [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL")
HBA1C = ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%")


@dataclass(frozen=True, slots=True)
class PatientSeed:
    """What is drawn for a patient up front: identity, and the facts its record is built from."""

    index: int
    id: str
    abha: str  # NN-NNNN-NNNN-NNNN
    given: str
    family: str
    gender: str
    birth_date: str
    organization_id: str
    place: tuple[str, str, str, str]
    hypertensive: bool
    diabetic: bool


@dataclass(frozen=True, slots=True)
class Population:
    seed: int
    organization_ids: tuple[str, ...]
    practitioner_ids: tuple[str, ...]
    patients: tuple[PatientSeed, ...]


def plan_population(patients: int = DEFAULT_PATIENTS, seed: int = DEFAULT_SEED) -> Population:
    """Every id and identity of the population, drawn in a fixed order from ``seed``."""
    rng = random.Random(seed)
    organization_ids = tuple(_uuid(rng) for _ in range(ORGANIZATIONS))
    practitioner_ids = tuple(_uuid(rng) for _ in range(PRACTITIONERS))
    seen_abha: set[str] = set()
    seeds = []
    for index in range(patients):
        abha = _abha_number(rng)
        while abha in seen_abha:
            abha = _abha_number(rng)
        seen_abha.add(abha)
        gender = "female" if rng.random() < 0.5 else "male"
        age = rng.randint(30, 80)
        birth = date(2024 - age, 1, 1) + timedelta(days=rng.randrange(365))
        hypertensive = rng.random() < 0.45
        seeds.append(PatientSeed(
            index=index,
            id=_uuid(rng),
            abha=abha,
            given=rng.choice(FEMALE_GIVEN if gender == "female" else MALE_GIVEN),
            family=rng.choice(FAMILY),
            gender=gender,
            birth_date=birth.isoformat(),
            organization_id=rng.choice(organization_ids),
            place=rng.choice(PLACES),
            hypertensive=hypertensive,
            diabetic=rng.random() < (0.45 if hypertensive else 0.25),
        ))  # fmt: skip
    return Population(seed, organization_ids, practitioner_ids, tuple(seeds))


def resources(population: Population) -> Iterator[dict[str, Any]]:
    """The whole population: the directory first, then each patient's record in turn."""
    yield from directory_resources(population)
    for patient in population.patients:
        yield from patient_resources(population, patient)


def directory_resources(population: Population) -> Iterator[dict[str, Any]]:
    """The Organizations (facilities) and Practitioners that patients' records refer to."""
    rng = random.Random(population.seed + 1)
    for number, org_id in enumerate(population.organization_ids, start=1):
        city, district, state, pin = rng.choice(PLACES)
        kind = rng.choice(FACILITY_KINDS)
        yield {
            "resourceType": "Organization",
            "id": org_id,
            "identifier": [{"system": FACILITY_SYSTEM, "value": f"IN{rng.randrange(10**9, 10**10)}"}],
            "active": True,
            "type": [{"coding": [{"system": ORGANIZATION_TYPE, "code": "prov", "display": "Healthcare Provider"}]}],
            "name": f"{kind} {city} {number}",
            "telecom": [{"system": "phone", "value": f"+91-{rng.randrange(10**9, 10**10)}", "use": "work"}],
            "address": [{"city": city, "district": district, "state": state,
                         "postalCode": f"{pin}{rng.randrange(1000):03d}", "country": "IN"}],
        }
    for prac_id in population.practitioner_ids:
        gender = "female" if rng.random() < 0.5 else "male"
        yield {
            "resourceType": "Practitioner",
            "id": prac_id,
            "identifier": [{"system": HPR_SYSTEM, "value": f"71-{rng.randrange(10**9, 10**10)}"}],
            "active": True,
            "name": [{"prefix": ["Dr."], "family": rng.choice(FAMILY),
                      "given": [rng.choice(FEMALE_GIVEN if gender == "female" else MALE_GIVEN)]}],
            "gender": gender,
            "qualification": [{"code": {"text": rng.choice(QUALIFICATIONS)}}],
        }


def patient_resources(population: Population, patient: PatientSeed) -> Iterator[dict[str, Any]]:
    """One patient's record: the Patient, its visits (Encounters) with vitals, blood pressure and
    glucose Observations, its Conditions, and the MedicationRequests of each visit."""
    rng = random.Random(population.seed * 1_000_003 + patient.index)
    yield _patient(patient, rng)
    first = FIRST_VISIT + timedelta(days=rng.randrange((LAST_VISIT - FIRST_VISIT).days - 400))
    visits = rng.randint(5, 9)
    days = sorted(rng.sample(range((LAST_VISIT - first).days), visits))
    clinicians = rng.sample(population.practitioner_ids, 2)
    height = rng.gauss(168 if patient.gender == "male" else 155, 7)
    weight = rng.gauss(70 if patient.gender == "male" else 60, 11)
    baseline_systolic = rng.gauss(150 if patient.hypertensive else 122, 12)
    baseline_glucose = rng.gauss(170 if patient.diabetic else 100, 25)
    diagnoses: list[tuple[str, str, str]] = []
    for visit, day in enumerate(days):
        start = datetime.combine(first + timedelta(days=day), datetime.min.time(), IST) + timedelta(
            hours=rng.randint(9, 16), minutes=rng.randrange(60))
        encounter_id = _uuid(rng)
        practitioner = rng.choice(clinicians)
        yield _encounter(encounter_id, patient, practitioner, start, rng)
        context = _Visit(patient, encounter_id, practitioner, start)
        weight += rng.gauss(0, 1.2)
        yield context.vital(rng, HEART_RATE, round(rng.gauss(78, 10)), minutes=5)
        yield context.vital(rng, WEIGHT, round(weight, 1), minutes=6)
        if visit == 0 or rng.random() < 0.15:
            yield context.vital(rng, HEIGHT, round(height, 1), minutes=7)
        yield context.vital(rng, BMI, round(weight / (height / 100) ** 2, 1), minutes=8)
        systolic = round(baseline_systolic + rng.gauss(0, 10))
        yield context.blood_pressure(rng, systolic, round(systolic * rng.uniform(0.58, 0.7)))
        if rng.random() < 0.7:
            yield context.lab(rng, GLUCOSE, round(baseline_glucose * rng.uniform(1.0, 1.5)), minutes=20)
        if patient.diabetic or rng.random() < 0.1:
            yield context.lab(rng, FASTING_GLUCOSE, round(baseline_glucose * rng.uniform(0.85, 1.1)), minutes=25)
        if (patient.diabetic and visit % 2 == 0) or rng.random() < 0.08:
            hba1c = 5.2 + max(0.0, baseline_glucose - 90) / 30 + rng.gauss(0, 0.4)
            yield context.lab(rng, HBA1C, round(hba1c, 1), minutes=30)
        if visit == 1 or (visit == 0 and len(days) == 1):
            for has, condition in ((patient.hypertensive, HYPERTENSION), (patient.diabetic, DIABETES)):
                if has:
                    diagnoses.append(condition)
                    yield context.condition(rng, condition)
        for condition in diagnoses:
            drugs = HYPERTENSION_DRUGS if condition is HYPERTENSION else DIABETES_DRUGS
            for drug in rng.sample(drugs, 1 if rng.random() < 0.7 else 2):
                yield context.medication_request(rng, drug, last=visit == len(days) - 1)


@dataclass(frozen=True, slots=True)
class _Visit:
    patient: PatientSeed
    encounter_id: str
    practitioner_id: str
    start: datetime

    def _observation(self, rng: random.Random, category: str, code: tuple[str, ...], minutes: int,
                     **value: Any) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": _uuid(rng),
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category,
                                      "display": "Vital Signs" if category == "vital-signs" else "Laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}], "text": code[1]},
            "subject": {"reference": f"Patient/{self.patient.id}"},
            "encounter": {"reference": f"Encounter/{self.encounter_id}"},
            "effectiveDateTime": _instant(self.start + timedelta(minutes=minutes)),
            "performer": [{"reference": f"Practitioner/{self.practitioner_id}"}],
            **value,
        }

    def vital(self, rng: random.Random, code: tuple[str, str, str, str], value: float, minutes: int) -> dict[str, Any]:
        return self._observation(rng, "vital-signs", code, minutes, valueQuantity=_quantity(code, value))

    def lab(self, rng: random.Random, code: tuple[str, str, str, str], value: float, minutes: int) -> dict[str, Any]:
        observation = self._observation(rng, "laboratory", code, minutes, valueQuantity=_quantity(code, value))
        observation["issued"] = _instant(self.start + timedelta(hours=rng.randint(2, 30)))
        return observation

    def blood_pressure(self, rng: random.Random, systolic: int, diastolic: int) -> dict[str, Any]:
        components = [{"code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]},
                       "valueQuantity": _quantity(code, value)}
                      for code, value in ((SYSTOLIC, systolic), (DIASTOLIC, diastolic))]
        return self._observation(rng, "vital-signs", BP_PANEL, 10, component=components)

    def condition(self, rng: random.Random, condition: tuple[str, str, str]) -> dict[str, Any]:
        system, code, display = condition
        onset = self.start.date() - timedelta(days=rng.randrange(30, 3000))
        return {
            "resourceType": "Condition",
            "id": _uuid(rng),
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": "confirmed"}]},
            "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item",
                                      "display": "Problem List Item"}]}],
            "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{self.patient.id}"},
            "encounter": {"reference": f"Encounter/{self.encounter_id}"},
            "onsetDateTime": onset.isoformat(),
            "recordedDate": _instant(self.start + timedelta(minutes=35)),
            "recorder": {"reference": f"Practitioner/{self.practitioner_id}"},
        }

    def medication_request(self, rng: random.Random, drug: tuple[str, str, str], last: bool) -> dict[str, Any]:
        code, display, instruction = drug
        return {
            "resourceType": "MedicationRequest",
            "id": _uuid(rng),
            "status": "active" if last else "completed",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": SNOMED, "code": code, "display": display}],
                                          "text": display},
            "subject": {"reference": f"Patient/{self.patient.id}"},
            "encounter": {"reference": f"Encounter/{self.encounter_id}"},
            "authoredOn": _instant(self.start + timedelta(minutes=40)),
            "requester": {"reference": f"Practitioner/{self.practitioner_id}"},
            "dosageInstruction": [{"text": instruction}],
            "dispenseRequest": {"numberOfRepeatsAllowed": 2,
                                "expectedSupplyDuration": {"value": 30, "unit": "days", "system": UCUM,
                                                           "code": "d"}},
        }


def _patient(patient: PatientSeed, rng: random.Random) -> dict[str, Any]:
    city, district, state, pin = patient.place
    return {
        "resourceType": "Patient",
        "id": patient.id,
        "identifier": [{"type": {"text": "ABHA number"}, "system": ABHA_SYSTEM, "value": patient.abha}],
        "active": True,
        "name": [{"use": "official", "text": f"{patient.given} {patient.family}", "family": patient.family,
                  "given": [patient.given]}],
        "telecom": [{"system": "phone", "value": f"+91-{rng.randrange(6 * 10**9, 10**10)}", "use": "mobile"}],
        "gender": patient.gender,
        "birthDate": patient.birth_date,
        "address": [{"use": "home", "line": [f"{rng.randint(1, 400)}, Ward {rng.randint(1, 60)}"], "city": city,
                     "district": district, "state": state, "postalCode": f"{pin}{rng.randrange(1000):03d}",
                     "country": "IN"}],
        "managingOrganization": {"reference": f"Organization/{patient.organization_id}"},
    }


def _encounter(encounter_id: str, patient: PatientSeed, practitioner_id: str, start: datetime,
               rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": {"system": ENCOUNTER_CLASS, "code": "AMB", "display": "ambulatory"},
        "type": [{"coding": [{"system": SNOMED, "code": "390906007", "display": "Follow-up encounter"}]}],
        "subject": {"reference": f"Patient/{patient.id}"},
        "participant": [{"individual": {"reference": f"Practitioner/{practitioner_id}"}}],
        "period": {"start": _instant(start), "end": _instant(start + timedelta(minutes=rng.randint(15, 60)))},
        "serviceProvider": {"reference": f"Organization/{patient.organization_id}"},
    }


def _quantity(code: tuple[str, str, str, str], value: float) -> dict[str, Any]:
    return {"value": value, "unit": code[3], "system": UCUM, "code": code[2]}


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _abha_number(rng: random.Random) -> str:
    digits = f"{rng.randrange(10**13, 10**14)}"
    return f"{digits[:2]}-{digits[2:6]}-{digits[6:10]}-{digits[10:]}"
