"""``_include`` and ``_revinclude`` (also ``:iterate`` and ``*``): the referenced or referencing
resources come as ``search.mode=include`` entries, once each, never counted in the total."""

from __future__ import annotations

from tests.api.ncd_clinic import BP_PANEL, GLUCOSE, HBA1C, Clinic


def test_include_adds_the_referenced_resources(clinic: Clinic) -> None:
    bundle = clinic.search(f"Observation?code={HBA1C}&_include=Observation:subject")
    assert clinic.labels(bundle) == {"a1c-asha", "a1c-jose", "a1c-meena"}
    assert clinic.labels(bundle, "include") == {"asha", "jose", "meena"}
    assert bundle["total"] == 3
    assert all(e["fullUrl"].startswith("http://testserver/") for e in bundle["entry"])


def test_include_with_a_target_type_and_of_several_parameters(clinic: Clinic) -> None:
    query = f"Observation?code={BP_PANEL}&subject={clinic.ref('asha')}"
    assert clinic.labels(clinic.search(f"{query}&_include=Observation:performer:Practitioner"), "include") == {
        "dr-kumar", "nurse-devi"}
    assert clinic.labels(clinic.search(f"{query}&_include=Observation:performer:Patient"), "include") == set()
    both = clinic.search(f"{query}&_include=Observation:performer&_include=Observation:encounter")
    assert clinic.labels(both, "include") == {"dr-kumar", "nurse-devi", "enc-asha-jan", "enc-asha-feb"}


def test_each_included_resource_appears_once(clinic: Clinic) -> None:
    bundle = clinic.search(f"Observation?subject={clinic.ref('asha')}&_include=Observation:subject")
    included = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert len(included) == 1 and clinic.labels(bundle, "include") == {"asha"}


def test_iterate_follows_references_of_included_resources(clinic: Clinic) -> None:
    query = f"Observation?code={GLUCOSE}&_include=Observation:subject"
    assert clinic.labels(clinic.search(query), "include") == {"asha", "ravi", "zoe"}
    iterated = clinic.search(f"{query}&_include:iterate=Patient:organization")
    assert clinic.labels(iterated, "include") == {"asha", "ravi", "zoe", "org-phc", "org-chc"}
    not_iterated = clinic.search(f"{query}&_include=Patient:organization")
    assert clinic.labels(not_iterated, "include") == {"asha", "ravi", "zoe"}


def test_include_wildcards(clinic: Clinic) -> None:
    query = f"Observation?_id={clinic.id('bp-asha-jan')}"
    expected = {"asha", "enc-asha-jan", "dr-kumar"}
    assert clinic.labels(clinic.search(f"{query}&_include=Observation:*"), "include") == expected
    assert clinic.labels(clinic.search(f"{query}&_include=*"), "include") == expected


def test_revinclude_adds_the_resources_that_refer_to_the_matches(clinic: Clinic) -> None:
    bundle = clinic.search(f"Patient?_id={clinic.id('zoe')}&_revinclude=Observation:subject"
                           "&_revinclude=Condition:subject")
    assert clinic.labels(bundle) == {"zoe"}
    assert clinic.labels(bundle, "include") == {"bp-zoe", "glu-zoe", "dm-zoe"}
    assert bundle["total"] == 1
    everything = clinic.search(f"Patient?_id={clinic.id('ravi')}&_revinclude=*")
    assert clinic.labels(everything, "include") == {"enc-ravi", "bp-ravi", "glu-ravi", "htn-ravi", "amlo-ravi",
                                                    "risk-ravi"}


def test_revinclude_then_iterate(clinic: Clinic) -> None:
    bundle = clinic.search(f"Practitioner?_id={clinic.id('nurse-devi')}&_revinclude=Observation:performer"
                           "&_include:iterate=Observation:subject")
    assert clinic.labels(bundle, "include") == {"bp-asha-feb", "asha"}


def test_bad_includes_are_bad_requests(clinic: Clinic) -> None:
    for value in ("Observation", "Observation:code", "Spaceship:subject", "Observation:subject:Medication",
                  "Observation:subject:Spaceship"):
        assert clinic.status(f"Observation?_include={value}") == 400, value
    assert clinic.status("Observation?_include:deep=Observation:subject") == 400
