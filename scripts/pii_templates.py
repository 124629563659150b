"""Presidio's masked templates ("Call {{PERSON}} at {{PHONE_NUMBER}}") filled again with fresh Faker values.

The synthetic PII set has 168 templates with 1 to 15 fillings each, so some entity types are seen only a handful of
times (US_SSN 16, US_DRIVER_LICENSE 5). New fillings of the training templates give every type many distinct
values in the contexts it already has; no held-out template is ever filled. Rows are tokenised and BIO-tagged
exactly like shared/data's derived synth_dataset_v2.bio.jsonl (see its SOURCE.md).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from faker import Faker

from lorakit.tokens import Span, Word, word_tags

TOKEN = re.compile(r"\w+|[^\w\s]")
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# the dataset's values come from many countries ("Koskikatu 25", "ΣΤΡΟΒΟΛΟΣ, Cyprus")
LOCALES = ("en_US", "en_GB", "en_AU", "de_DE", "fr_FR", "es_ES", "pt_PT", "nl_NL", "sv_SE", "da_DK", "fi_FI",
           "pt_BR", "cs_CZ", "pl_PL", "hu_HU")  # not it_IT: its cities come from a set, in hash order
NATIONALITIES = ("American", "British", "English", "Canadian", "Mexican", "Brazilian", "Argentinian", "Chilean",
                 "Peruvian", "Colombian", "German", "French", "Spanish", "Portuguese", "Italian", "Dutch", "Belgian",
                 "Swiss", "Austrian", "Danish", "Swedish", "Norwegian", "Finnish", "Icelandic", "Irish", "Scottish",
                 "Welsh", "Polish", "Czech", "Slovak", "Slovenian", "Croatian", "Serbian", "Hungarian", "Romanian",
                 "Bulgarian", "Greek", "Turkish", "Russian", "Ukrainian", "Georgian", "Armenian", "Indian",
                 "Pakistani", "Bangladeshi", "Nepali", "Chinese", "Japanese", "Korean", "Vietnamese", "Thai",
                 "Cambodian", "Filipino", "Indonesian", "Malaysian", "Australian", "Nigerian", "Kenyan", "Ghanaian",
                 "Ethiopian", "Egyptian", "Moroccan", "Tunisian", "Algerian", "Lebanese", "Syrian", "Iraqi",
                 "Iranian", "Saudi", "Israeli", "Jewish", "Muslim", "Christian", "Catholic", "Protestant", "Buddhist",
                 "Hindu", "Sikh", "Shiite", "Sunni", "Republican", "Democrat")
# the dataset's organisations are often one-word brands ("Plotwatt", "Xignite", "Cloudmade")
BRAND_ENDINGS = ("watt", "ly", "ify", "stop", "vibes", "made", "space", "score", "labs", "data", "works", "hub")
ORGANIZATION_SUFFIXES = ("", "", "", " Inc", " Inc.", " LLC", " Research LLC", " Group", " Analytics", " Ltd.")
# fixed bounds: Faker's own defaults end at the current time, and the rows would change with the clock
DATE_RANGE = (datetime(1950, 1, 1), datetime(2025, 12, 31))
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y", "%Y-%m-%d", "%B", "%A", "%d/%m/%Y", "%B %d, %Y")
# US driver licence formats of a few states (letters as ?, digits as #)
DRIVER_LICENSES = ("?#######", "#########", "?############", "###-##-####", "?##-###-##-###-#", "#######",
                   "??######", "?###-####-####")


def value_makers(fake: Faker, rng: random.Random) -> dict[str, Callable[[], str]]:
    """One maker per entity type of the dataset, each returning a fresh value."""
    us = fake["en_US"]

    def pick(*makers: Callable[[], Any]) -> str:
        return str(rng.choice(makers)())

    def sometimes_lower(value: str) -> str:  # the dataset has "leone mazzi", "cambodian", "sewer pipe cleaner"
        return value.lower() if rng.random() < 0.1 else value

    def city() -> str:  # "PORVOO", "Den Haag"
        return fake.city().upper() if rng.random() < 0.2 else fake.city()

    def full_address() -> str:
        """The dataset's single addresses: half run over several lines to the city, country and postcode."""
        street, unit, code = fake.street_address(), us.secondary_address(), fake.postcode()
        number = str(rng.randint(1, 99999))
        layouts = (lambda: f"{number} {street}\n {unit}\n {city()}\n {fake.country()} {code}",
                   lambda: f"{number} {street} {unit}, {city()}, {fake.country()} {code}",
                   lambda: f"{street}\n{city()}\n, {us.state_abbr()}\n {code}",
                   lambda: f"the corner of {street} and {fake.street_name()}",
                   fake.address, us.address, lambda: street, lambda: f"{number} {street}")
        return str(rng.choice(layouts)())

    def brand() -> str:
        stem = us.word() if rng.random() < 0.5 else fake.last_name()
        return stem.capitalize() + rng.choice(BRAND_ENDINGS) + rng.choice(ORGANIZATION_SUFFIXES)

    def nationality() -> str:  # "Danish", "saudis", "ecuadoreans"
        name = rng.choice(NATIONALITIES)
        return name + "s" if rng.random() < 0.25 and not name.endswith(("sh", "ch", "se", "ss")) else name

    return {
        "PERSON": lambda: sometimes_lower(pick(fake.name, fake.name, fake.first_name, fake.last_name)),
        "STREET_ADDRESS": lambda: sometimes_lower(full_address()),
        "GPE": lambda: pick(city, city, fake.country, us.state),
        "ORGANIZATION": lambda: sometimes_lower(pick(fake.company, us.company, brand, brand)),
        "DATE_TIME": lambda: fake.date_time_between(*DATE_RANGE).strftime(rng.choice(DATE_FORMATS)),
        "CREDIT_CARD": us.credit_card_number,
        "TITLE": lambda: sometimes_lower(pick(us.prefix, us.prefix, us.job)),  # "Mrs.", "Leasing consultant"
        "PHONE_NUMBER": fake.phone_number,
        "AGE": lambda: str(rng.randint(1, 99)),
        "NRP": lambda: sometimes_lower(nationality()),
        "EMAIL_ADDRESS": lambda: pick(fake.email, fake.free_email, fake.company_email),
        "ZIP_CODE": fake.postcode,
        "DOMAIN_NAME": lambda: pick(fake.url, fake.domain_name),
        "US_SSN": us.ssn,
        "IP_ADDRESS": lambda: pick(fake.ipv4, fake.ipv4, fake.ipv6),
        "IBAN_CODE": fake.iban,
        "US_DRIVER_LICENSE": lambda: us.bothify(rng.choice(DRIVER_LICENSES)).upper(),
    }


def bio_row(text: str, spans: list[Span]) -> dict[str, Any]:
    """The text's tokens, their character spans and their IOB2 tags (lorakit's own word tagging)."""
    matches = list(TOKEN.finditer(text))
    words = [Word(i, i, match.start(), match.end()) for i, match in enumerate(matches)]
    return {"text": text, "tokens": [match.group() for match in matches],
            "token_spans": [[match.start(), match.end()] for match in matches], "ner_tags": word_tags(words, spans)}


def run_parts(fake: Faker, rng: random.Random) -> dict[str, list[Callable[[], str]]]:
    """Makers of each part where the dataset writes one value as several placeholders in a row: an address as
    "{{STREET_ADDRESS}} {{STREET_ADDRESS}} {{STREET_ADDRESS}}" (building number, street, secondary address), a place
    as "{{GPE}} {{GPE}}" (city, then state or country); each part is an entity of its own."""
    us = fake["en_US"]
    return {"STREET_ADDRESS": [lambda: str(rng.randint(1, 99999)), fake.street_address, us.secondary_address],
            "GPE": [fake.city, lambda: str(rng.choice((fake.country, us.state_abbr, us.state))())]}


def run_positions(masked: str) -> list[tuple[re.Match[str], int, int]]:
    """Every placeholder with its position in its run of same-type placeholders separated by whitespace only, and
    the run's length."""
    runs: list[list[re.Match[str]]] = []
    for match in PLACEHOLDER.finditer(masked):
        last = runs[-1][-1] if runs else None
        if last is not None and last.group(1) == match.group(1) and not masked[last.end():match.start()].strip():
            runs[-1].append(match)
        else:
            runs.append([match])
    return [(match, position, len(run)) for run in runs for position, match in enumerate(run)]


class TemplateFiller:
    """Fills masked templates; the same seed gives the same rows."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker(list(LOCALES))
        self.fake.seed_instance(seed)
        self.makers = value_makers(self.fake, self.rng)
        self.parts = run_parts(self.fake, self.rng)

    def fill(self, masked: str) -> dict[str, Any]:
        """One filling of `masked`; ValueError names a placeholder that is not an entity type of the dataset."""
        parts: list[str] = []
        spans: list[Span] = []
        cursor = 0
        for match, position, length in run_positions(masked):
            kind = match.group(1)
            if kind not in self.makers:
                raise ValueError(f"template {masked!r}: unknown entity type {kind!r}; known: {', '.join(self.makers)}")
            parts.append(masked[cursor:match.start()])
            start = sum(map(len, parts))
            part_makers = self.parts.get(kind, [])
            maker = part_makers[position] if 1 < length and position < len(part_makers) else self.makers[kind]
            value = maker().strip() or kind.lower()
            parts.append(value)
            spans.append(Span(start, start + len(value), kind))
            cursor = match.end()
        parts.append(masked[cursor:])
        return bio_row("".join(parts), spans)
