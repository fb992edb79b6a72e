"""Writes the bundled sample archive, ``examples/archive/news/...``, from the table below.

This script owns the sample archive's content: short summaries, in our own words, of
real historical events across ten ongoing stories, in the page format of SPEC
section 1. The committed artifact is the files it writes; run it again only to
change the sample (``python examples/write_sample_archive.py``), then run
``pytest tests/test_sample_archive.py``.

One page is not written from the table: the Lal Masjid siege page of 2007-07-9 is a
real archive page kept verbatim (it is ``seeds/000_ffb26b68fc8d7c51.txt``), and the
pages its Related list links to carry the exact summaries that list quotes, at the
exact paths it names.

Related lists are built per story (the previous and next event, the story's first and
last event) plus hand-picked links across stories. Their contexts are the topic names
the two events share; every link points to a page of this archive and quotes that
page's summary.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent / "archive"

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def page_slug(summary: str) -> str:
    """The archive's page slug: lowercased, runs of other characters as "-", <= 140."""
    return _NOT_SLUG.sub("-", summary.lower()).strip("-")[:140].rstrip("-")


@dataclass
class Ev:
    key: str
    day: str  # YYYY-MM-DD
    story: str | None
    summary: str
    tags: list[str]
    sources: list[tuple[str, str]] = field(default_factory=list)  # (outlet, topic words)
    extra: list[tuple[str, str]] = field(default_factory=list)  # (key, "Context, Names")
    slug: str | None = None  # a path fixed by the verbatim seed page
    verbatim: bool = False  # the page exists verbatim and is not written

    @property
    def date(self) -> date:
        return date.fromisoformat(self.day)

    @property
    def path(self) -> str:
        d = self.date
        return f"/news/{d.year}/{d.month:02d}/{d.day}/{self.slug or page_slug(self.summary)}"


LAL = "Lal Masjid siege"
TOH = "2011 Tōhoku earthquake and tsunami"
FUK = "Fukushima Daiichi nuclear disaster"
CIV = "2010–2011 Ivorian crisis"
EGY = "Egyptian revolution of 2011"
DWH = "Deepwater Horizon oil spill"
CHI = "2010 Copiapó mining accident"
MUM = "2008 Mumbai attacks"
EYJ = "2010 eruptions of Eyjafjallajökull"
BRX = "Brexit"

EVENTS: list[Ev] = [
    # --- Lal Masjid siege and Islamabad -------------------------------------------
    Ev(
        "lal-clashes",
        "2007-07-03",
        LAL,
        "Lal Masjid clashes: At least seven people have been killed in clashes between "
        "security forces and militant students at a mosque in the Pakistani capital Islamabad.",
        ["Islamabad", "Red Mosque", "Pakistan"],
        [("BBC News", "south asia"), ("Dawn", "red mosque clashes")],
        slug="lal-masjid-clashes-at-least-seven-people-have-been-killed-in-clashes-between-"
        "security-forces-and-militant-students-at-a-mosque-in-the-paki",
    ),
    Ev(
        "lal-aziz",
        "2007-07-04",
        LAL,
        "Lal Masjid siege: Abdul Aziz, the chief cleric of Islamabad's Red Mosque, is caught "
        "by security forces as he tries to leave the besieged compound disguised in a burqa.",
        ["Islamabad", "Red Mosque", "Abdul Aziz Ghazi"],
        [("Reuters", "pakistan mosque cleric"), ("Dawn", "aziz arrested")],
    ),
    Ev(
        "lal-seed",
        "2007-07-09",
        LAL,
        "Lal Masjid siege: An attempt to negotiate a peaceful end to the seven-day standoff "
        "at Islamabad's Red Mosque ends without any progress.",
        ["Islamabad", "Red Mosque"],
        slug="lal-masjid-siege-an-attempt-to-negotiate-a-peaceful-end-to-the-seven-day-"
        "standoff-at-islamabad-s-red-mosque-ends-without-any-progress",
        verbatim=True,
    ),
    Ev(
        "lal-storm",
        "2007-07-10",
        LAL,
        "Pakistani forces storm the Lal Masjid Mosque in Islamabad, bringing the Lal Masjid "
        "siege to an end. At least 3 soldiers and 40 militants die in the assault. "
        "[https:--www.reuters.com-article-topNews-idUSISL18833720070710?feedType=RSS "
        "(Reuters)] [http:--www.foxnews.com-story-0,2933,288736,00.html (FOX)]. Abdul Rashid "
        "Ghazi, a top clerics was confirmed dead according to Interior ministry sources.",
        ["Islamabad", "Red Mosque", "Abdul Rashid Ghazi", "Pakistan Army"],
        [("Reuters", "pakistan mosque stormed"), ("Al Jazeera English", "red mosque stormed")],
        slug="pakistani-forces-storm-the-lal-masjid-mosque-in-islamabad-bringing-the-lal-"
        "masjid-siege-to-an-end-at-least-3-soldiers-and-40-militants-di",
    ),
    Ev(
        "lal-reopen",
        "2007-07-27",
        LAL,
        "Lal Masjid siege: Hours after the Red Mosque reopens for prayers, a suicide bomber "
        "strikes a nearby market in Islamabad, killing at least 13 people, most of them police.",
        ["Islamabad", "Red Mosque", "Pakistan"],
        [("BBC News", "islamabad blast"), ("Dawn", "aabpara bombing")],
    ),
    Ev(
        "lal-anniv",
        "2008-07-06",
        None,
        "An explosion near the Red Mosque in the Pakistani capital Islamabad kills at least "
        "10 people. The attack came on the first anniversary of the deadly siege and storming "
        "of the Red Mosque.",
        ["Islamabad", "Red Mosque", "Pakistan"],
        [("Dawn", "melody market blast"), ("Associated Press", "islamabad bombing")],
        [("lal-storm", "Lal Masjid siege, Red Mosque")],
        slug="an-explosion-near-the-red-mosque-in-the-pakistani-capital-islamabad-kills-at-"
        "least-10-people-the-attack-came-on-the-first-anniversary-of-t",
    ),
    Ev(
        "lal-bail",
        "2009-04-16",
        LAL,
        "Lal Masjid siege: Abdul Aziz, the former chief cleric of the Red Mosque, walks free "
        "on bail granted by the Supreme Court, almost two years after his capture in the siege.",
        ["Islamabad", "Red Mosque", "Abdul Aziz Ghazi", "Supreme Court of Pakistan"],
        [("Dawn", "aziz bail"), ("BBC News", "red mosque cleric freed")],
    ),
    Ev(
        "pk-kashmir",
        "2016-11-24",
        None,
        "Pakistani Chief of Air Staff Sohail Aman warns India not to escalate tensions in the "
        "disputed territory of Kashmir under the threat of a full-scale war. British Foreign "
        "Secretary Boris Johnson urges both sides to restrain themselves while on a diplomatic "
        "mission to Islamabad.",
        ["Islamabad", "Kashmir", "India", "Pakistan", "Boris Johnson"],
        [("Dawn", "air chief warns india"), ("The Express Tribune", "boris johnson islamabad")],
        [
            ("lal-seed", "Islamabad"),
            ("mum-attacks", "India, Pakistan"),
            ("brx-election", "Boris Johnson"),
        ],
        slug="pakistani-chief-of-air-staff-sohail-aman-warns-india-not-to-escalate-tensions-in-"
        "the-disputed-territory-of-kashmir-under-the-threat-of-a-ful",
    ),
    Ev(
        "pk-faizabad",
        "2017-11-26",
        None,
        "Pakistan's government calls for troops to be deployed in the capital, Islamabad, "
        "after violence breaks out during protests by Islamists that were organized by the "
        "Tehreek-e-Labaik.",
        ["Islamabad", "Pakistan", "Tehreek-e-Labbaik Pakistan"],
        [("Dawn", "faizabad sit in army"), ("Reuters", "pakistan islamist protest troops")],
        [("lal-seed", "Islamabad"), ("lal-reopen", "Islamabad"), ("pk-kashmir", "Islamabad")],
        slug="pakistan-s-government-calls-for-troops-to-be-deployed-in-the-capital-islamabad-"
        "after-violence-breaks-out-during-protests-by-islamists-that",
    ),
    # --- 2011 Tōhoku earthquake and tsunami ---------------------------------------
    Ev(
        "toh-foreshock",
        "2011-03-09",
        TOH,
        "A magnitude 7.2 earthquake strikes off the coast of Miyagi Prefecture in northeastern "
        "Japan, raising a tsunami of about half a metre but causing little damage.",
        ["Japan", "Miyagi Prefecture", "Tōhoku"],
        [("NHK World", "miyagi quake"), ("The Japan Times", "offshore quake")],
    ),
    Ev(
        "toh-quake",
        "2011-03-11",
        TOH,
        "2011 Tōhoku earthquake and tsunami: A magnitude 8.9 earthquake off the Pacific coast "
        "of Tōhoku sends a tsunami more than ten metres high into towns along Japan's "
        "northeast coast; Sendai Airport is flooded.",
        ["Japan", "Tōhoku", "Miyagi Prefecture", "Sendai"],
        [
            ("BBC News", "japan earthquake tsunami"),
            ("NHK World", "major tsunami warning"),
            ("Wikipedia", "Sendai_Airport"),
        ],
        [("fuk-unit1", "Fukushima Prefecture, Japan")],
    ),
    Ev(
        "toh-upgrade",
        "2011-03-13",
        TOH,
        "The Japan Meteorological Agency revises the magnitude of Friday's earthquake to 9.0, "
        "and Prime Minister Naoto Kan calls the disaster Japan's toughest crisis since the "
        "Second World War.",
        ["Japan", "Naoto Kan", "Tōhoku"],
        [("The Japan Times", "magnitude revised"), ("Reuters", "kan worst crisis")],
        [("fuk-unit3", "Naoto Kan, Japan")],
    ),
    Ev(
        "toh-emperor",
        "2011-03-16",
        TOH,
        "Emperor Akihito makes a rare televised address, saying he is deeply worried by the "
        "nuclear crisis and urging the Japanese people not to give up.",
        ["Japan", "Akihito"],
        [("NHK World", "emperor message"), ("The Guardian", "emperor akihito address")],
        [("fuk-unit4", "Fukushima Daiichi nuclear disaster")],
    ),
    Ev(
        "toh-aftershock",
        "2011-04-07",
        TOH,
        "A magnitude 7.1 aftershock shakes Miyagi Prefecture, killing several people, "
        "cutting power across northern Japan and knocking out power lines to the Onagawa "
        "nuclear plant.",
        ["Japan", "Miyagi Prefecture", "Tōhoku"],
        [("NHK World", "strong aftershock"), ("Associated Press", "japan aftershock")],
    ),
    Ev(
        "toh-law",
        "2011-06-20",
        TOH,
        "Japan's parliament passes a basic law for reconstruction after the March disaster, "
        "paving the way for a new agency to oversee rebuilding in the Tōhoku region.",
        ["Japan", "Tōhoku", "National Diet"],
        [("The Japan Times", "reconstruction law enacted")],
    ),
    Ev(
        "toh-anniv",
        "2012-03-11",
        TOH,
        "Japan marks the first anniversary of the earthquake and tsunami with a minute of "
        "silence at 2:46 p.m., the moment the ground began to shake.",
        ["Japan", "Tōhoku", "Akihito"],
        [("NHK World", "first anniversary"), ("BBC News", "japan remembers")],
        [("fuk-shutdown", "Japan")],
    ),
    Ev(
        "toh-ten",
        "2021-03-11",
        TOH,
        "2011 Tōhoku earthquake and tsunami: Ten years on, memorial services across Japan "
        "remember the more than 18,000 people who were killed or are still missing.",
        ["Japan", "Tōhoku", "Miyagi Prefecture"],
        [("NHK World", "ten years memorial"), ("The Japan Times", "decade after 311")],
        [("fuk-water-plan", "Fukushima Prefecture, Japan")],
    ),
    # --- Fukushima Daiichi nuclear disaster ----------------------------------------
    Ev(
        "fuk-unit1",
        "2011-03-12",
        FUK,
        "Fukushima Daiichi nuclear disaster: A hydrogen explosion blows apart the outer "
        "building of reactor 1 at the Fukushima Daiichi plant, and the evacuation zone is "
        "widened to 20 kilometres.",
        ["Japan", "Fukushima Prefecture", "TEPCO"],
        [("NHK World", "reactor building explosion"), ("Reuters", "fukushima blast")],
        [("toh-quake", "2011 Tōhoku earthquake and tsunami, Tōhoku")],
    ),
    Ev(
        "fuk-unit3",
        "2011-03-14",
        FUK,
        "A second hydrogen explosion tears through the building of reactor 3 at Fukushima "
        "Daiichi, injuring 11 workers.",
        ["Japan", "Fukushima Prefecture", "TEPCO", "Naoto Kan"],
        [("Associated Press", "second explosion"), ("The Japan Times", "unit 3 blast")],
    ),
    Ev(
        "fuk-unit4",
        "2011-03-15",
        FUK,
        "Fukushima Daiichi nuclear disaster: A blast is heard near reactor 2 and a fire "
        "breaks out at unit 4; people living 20 to 30 kilometres from the plant are told to "
        "stay indoors.",
        ["Japan", "Fukushima Prefecture", "TEPCO", "Naoto Kan"],
        [("BBC News", "fukushima radiation fears"), ("NHK World", "stay indoors")],
    ),
    Ev(
        "fuk-level7",
        "2011-04-12",
        FUK,
        "Japan raises the severity rating of the Fukushima crisis to level 7, the top of the "
        "international scale and the same rating given to Chernobyl.",
        ["Japan", "International Atomic Energy Agency", "Chernobyl disaster"],
        [("Reuters", "level 7"), ("The Guardian", "fukushima chernobyl rating")],
    ),
    Ev(
        "fuk-shutdown",
        "2011-12-16",
        FUK,
        "Prime Minister Yoshihiko Noda declares that the damaged reactors at Fukushima Daiichi "
        "have reached a state of cold shutdown.",
        ["Japan", "TEPCO", "Yoshihiko Noda"],
        [("NHK World", "cold shutdown"), ("BBC News", "cold shutdown declared")],
    ),
    Ev(
        "fuk-leak",
        "2013-08-20",
        FUK,
        "TEPCO says about 300 tonnes of highly radioactive water have leaked from a storage "
        "tank at the Fukushima Daiichi plant.",
        ["TEPCO", "Fukushima Prefecture", "Nuclear Regulation Authority"],
        [("The Japan Times", "tank leak"), ("Reuters", "tepco leak 300 tonnes")],
    ),
    Ev(
        "fuk-water-plan",
        "2021-04-13",
        FUK,
        "Fukushima Daiichi nuclear disaster: Japan's government approves a plan to release "
        "more than a million tonnes of treated water from the plant into the Pacific Ocean "
        "over several decades.",
        ["Japan", "TEPCO", "Fukushima Prefecture", "Pacific Ocean"],
        [("NHK World", "treated water decision"), ("Associated Press", "japan water release")],
    ),
    Ev(
        "fuk-water-start",
        "2023-08-24",
        FUK,
        "TEPCO starts pumping treated radioactive water from Fukushima Daiichi into the sea; "
        "China answers by suspending all imports of Japanese seafood.",
        ["TEPCO", "Pacific Ocean", "China", "International Atomic Energy Agency"],
        [("BBC News", "fukushima water release begins"), ("Reuters", "china seafood ban")],
    ),
    Ev(
        "fuk-debris",
        "2024-11-07",
        FUK,
        "A robotic arm brings out a tiny piece of melted nuclear fuel from reactor 2 at "
        "Fukushima Daiichi, the first debris removed since the 2011 meltdowns.",
        ["TEPCO", "Fukushima Prefecture", "Japan"],
        [("NHK World", "fuel debris retrieved"), ("The Japan Times", "first debris sample")],
        [("toh-quake", "2011 Tōhoku earthquake and tsunami")],
    ),
    # --- 2010–2011 Ivorian crisis ------------------------------------------------------
    Ev(
        "civ-first",
        "2010-10-31",
        CIV,
        "Voters in Côte d'Ivoire turn out in large numbers for a presidential election "
        "delayed since 2005, the first in a decade.",
        ["Côte d'Ivoire", "Laurent Gbagbo", "Alassane Ouattara"],
        [("RFI", "ivorian presidential vote"), ("BBC News", "ivory coast election")],
    ),
    Ev(
        "civ-runoff",
        "2010-11-28",
        CIV,
        "Côte d'Ivoire holds a presidential runoff between President Laurent Gbagbo and "
        "former prime minister Alassane Ouattara under a night-time curfew.",
        ["Côte d'Ivoire", "Laurent Gbagbo", "Alassane Ouattara"],
        [("France 24", "second round"), ("Reuters", "ivory coast runoff")],
    ),
    Ev(
        "civ-cei",
        "2010-12-02",
        CIV,
        "2010–2011 Ivorian crisis: The Independent Electoral Commission says Alassane "
        "Ouattara has won the presidential runoff with about 54 percent of the vote.",
        ["Côte d'Ivoire", "Alassane Ouattara", "Abidjan"],
        [("RFI", "cei results"), ("Le Monde", "ouattara vainqueur")],
    ),
    Ev(
        "civ-council",
        "2010-12-03",
        CIV,
        "2010–2011 Ivorian crisis: The Constitutional Council throws out results from several "
        "northern regions and proclaims Laurent Gbagbo the winner.",
        ["Côte d'Ivoire", "Laurent Gbagbo", "Abidjan"],
        [("France 24", "constitutional council gbagbo"), ("BBC News", "rival result")],
    ),
    Ev(
        "civ-oaths",
        "2010-12-04",
        CIV,
        "Laurent Gbagbo and Alassane Ouattara each take the presidential oath, leaving Côte "
        "d'Ivoire with two rival presidents.",
        ["Côte d'Ivoire", "Laurent Gbagbo", "Alassane Ouattara", "Abidjan"],
        [("Al Jazeera English", "two presidents sworn in"), ("Le Monde", "deux presidents")],
    ),
    Ev(
        "civ-ecowas",
        "2010-12-07",
        CIV,
        "The Economic Community of West African States suspends Côte d'Ivoire and calls on "
        "Laurent Gbagbo to hand power to Alassane Ouattara.",
        ["Côte d'Ivoire", "ECOWAS", "Laurent Gbagbo", "Alassane Ouattara"],
        [("Reuters", "ecowas suspends"), ("RFI", "cedeao suspension")],
    ),
    Ev(
        "civ-abobo",
        "2011-03-03",
        CIV,
        "Security forces loyal to Laurent Gbagbo open fire on a women's march in the Abobo "
        "district of Abidjan, killing seven protesters.",
        ["Abidjan", "Laurent Gbagbo", "Côte d'Ivoire"],
        [("BBC News", "abobo women killed"), ("France 24", "marche des femmes")],
    ),
    Ev(
        "civ-offensive",
        "2011-03-30",
        CIV,
        "2010–2011 Ivorian crisis: Forces backing Alassane Ouattara take the capital "
        "Yamoussoukro after sweeping south through Duékoué and other western towns.",
        ["Côte d'Ivoire", "Alassane Ouattara", "Yamoussoukro", "Duékoué"],
        [("Reuters", "ouattara forces yamoussoukro"), ("Al Jazeera English", "forces advance")],
    ),
    Ev(
        "civ-arrest",
        "2011-04-11",
        CIV,
        "2010–2011 Ivorian crisis: Laurent Gbagbo is arrested at his residence in Abidjan by "
        "Ouattara's forces, backed by French and United Nations troops.",
        ["Abidjan", "Laurent Gbagbo", "Alassane Ouattara", "United Nations", "France"],
        [("BBC News", "gbagbo arrested"), ("Le Monde", "arrestation gbagbo")],
    ),
    Ev(
        "civ-inaug",
        "2011-05-21",
        CIV,
        "Alassane Ouattara is formally inaugurated as president of Côte d'Ivoire at a "
        "ceremony in Yamoussoukro attended by several foreign leaders.",
        ["Côte d'Ivoire", "Alassane Ouattara", "Yamoussoukro"],
        [("RFI", "investiture ouattara"), ("Associated Press", "ouattara inaugurated")],
    ),
    Ev(
        "civ-icc",
        "2011-11-30",
        CIV,
        "Former Ivorian president Laurent Gbagbo is flown to The Hague to face charges of "
        "crimes against humanity at the International Criminal Court.",
        ["Laurent Gbagbo", "International Criminal Court", "Côte d'Ivoire"],
        [("Reuters", "gbagbo the hague"), ("The Guardian", "gbagbo icc")],
    ),
    Ev(
        "civ-acquit",
        "2019-01-15",
        CIV,
        "The International Criminal Court acquits Laurent Gbagbo of crimes against humanity "
        "over the violence that followed the 2010 election in Côte d'Ivoire.",
        ["Laurent Gbagbo", "International Criminal Court", "Côte d'Ivoire"],
        [("BBC News", "gbagbo acquitted"), ("France 24", "gbagbo acquitte")],
    ),
    Ev(
        "civ-return",
        "2021-06-17",
        CIV,
        "Laurent Gbagbo returns to Abidjan after a decade away, following the confirmation "
        "of his acquittal by the International Criminal Court.",
        ["Abidjan", "Laurent Gbagbo", "International Criminal Court", "Côte d'Ivoire"],
        [("RFI", "retour gbagbo"), ("Al Jazeera English", "gbagbo returns home")],
    ),
    # --- Egyptian revolution of 2011 ---------------------------------------------------
    Ev(
        "tun-benali",
        "2011-01-14",
        None,
        "Tunisian President Zine El Abidine Ben Ali flees to Saudi Arabia after weeks of "
        "street protests, ending 23 years in power.",
        ["Tunisia", "Arab Spring", "Zine El Abidine Ben Ali"],
        [("Al Jazeera English", "ben ali flees"), ("France 24", "ben ali quitte la tunisie")],
        [("egy-day1", "Arab Spring"), ("egy-resign", "Arab Spring")],
    ),
    Ev(
        "egy-day1",
        "2011-01-25",
        EGY,
        "Egyptian revolution of 2011: Tens of thousands of people protest in Cairo's Tahrir "
        "Square and in other cities against President Hosni Mubarak, inspired by the uprising "
        "in Tunisia.",
        ["Cairo", "Tahrir Square", "Hosni Mubarak", "Arab Spring"],
        [("Al Jazeera English", "egypt protests"), ("Ahram Online", "january 25 protests")],
        [("tun-benali", "Arab Spring, Tunisia")],
    ),
    Ev(
        "egy-anger",
        "2011-01-28",
        EGY,
        "Egypt cuts internet and mobile phone services as huge crowds march after Friday "
        "prayers; a curfew is declared and the army is sent into Cairo.",
        ["Cairo", "Egypt", "Hosni Mubarak", "Arab Spring"],
        [("BBC News", "egypt internet cut"), ("The Guardian", "friday of anger")],
    ),
    Ev(
        "egy-suleiman",
        "2011-01-29",
        EGY,
        "Hosni Mubarak dismisses his cabinet and names intelligence chief Omar Suleiman as "
        "Egypt's first vice president in three decades.",
        ["Egypt", "Hosni Mubarak", "Omar Suleiman"],
        [("Reuters", "suleiman vice president"), ("Ahram Online", "new vice president")],
    ),
    Ev(
        "egy-camel",
        "2011-02-02",
        EGY,
        "Supporters of Hosni Mubarak, some riding horses and camels, charge anti-government "
        "protesters in Tahrir Square, starting hours of street fighting.",
        ["Cairo", "Tahrir Square", "Hosni Mubarak"],
        [("Al Jazeera English", "tahrir clashes"), ("Associated Press", "camels tahrir")],
    ),
    Ev(
        "egy-resign",
        "2011-02-11",
        EGY,
        "Egyptian revolution of 2011: Hosni Mubarak resigns after 18 days of mass protests and "
        "hands power to the Supreme Council of the Armed Forces.",
        [
            "Egypt",
            "Hosni Mubarak",
            "Tahrir Square",
            "Arab Spring",
            "Supreme Council of the Armed Forces",
        ],
        [("BBC News", "mubarak resigns"), ("Al Jazeera English", "mubarak steps down")],
    ),
    Ev(
        "egy-dissolve",
        "2011-02-13",
        EGY,
        "Egypt's ruling military council dissolves parliament and suspends the constitution, "
        "promising elections within six months.",
        ["Egypt", "Supreme Council of the Armed Forces"],
        [("Reuters", "egypt army dissolves parliament")],
    ),
    Ev(
        "egy-referendum",
        "2011-03-19",
        EGY,
        "Egyptian voters approve a package of constitutional amendments in a referendum, with "
        "about 77 percent voting yes.",
        ["Egypt", "Supreme Council of the Armed Forces"],
        [("Ahram Online", "referendum results"), ("The Guardian", "egypt referendum")],
    ),
    Ev(
        "egy-trial",
        "2011-08-03",
        EGY,
        "Egyptian revolution of 2011: Hosni Mubarak goes on trial in Cairo, appearing in a "
        "courtroom cage on a hospital bed.",
        ["Cairo", "Hosni Mubarak", "Egypt"],
        [("BBC News", "mubarak trial"), ("Ahram Online", "mubarak in the cage")],
    ),
    Ev(
        "egy-life",
        "2012-06-02",
        EGY,
        "A Cairo court sentences Hosni Mubarak to life in prison for failing to stop the "
        "killing of protesters during the 2011 uprising.",
        ["Cairo", "Hosni Mubarak", "Egypt"],
        [("Reuters", "mubarak life sentence"), ("Al Jazeera English", "mubarak verdict")],
    ),
    Ev(
        "egy-morsi",
        "2012-06-24",
        EGY,
        "Mohamed Morsi of the Muslim Brotherhood is declared the winner of Egypt's presidential "
        "runoff, becoming its first freely elected president.",
        ["Egypt", "Mohamed Morsi", "Muslim Brotherhood", "Tahrir Square"],
        [("Ahram Online", "morsi wins"), ("BBC News", "morsi declared winner")],
    ),
    Ev(
        "egy-coup",
        "2013-07-03",
        EGY,
        "Egypt's army removes President Mohamed Morsi from office after days of mass protests "
        "and suspends the constitution.",
        ["Egypt", "Mohamed Morsi", "Muslim Brotherhood", "Abdel Fattah el-Sisi"],
        [("Al Jazeera English", "morsi ousted"), ("The Guardian", "egypt army morsi")],
    ),
    Ev(
        "egy-death",
        "2020-02-25",
        EGY,
        "Former Egyptian president Hosni Mubarak, who was forced from office in 2011, dies in "
        "Cairo at the age of 91.",
        ["Cairo", "Hosni Mubarak", "Egypt"],
        [("Ahram Online", "mubarak dies"), ("Associated Press", "mubarak dead at 91")],
    ),
    # --- Deepwater Horizon oil spill -------------------------------------------------
    Ev(
        "dwh-blast",
        "2010-04-20",
        DWH,
        "An explosion and fire on the Deepwater Horizon drilling rig in the Gulf of Mexico "
        "leave 11 workers missing.",
        ["Gulf of Mexico", "BP", "Transocean", "Louisiana"],
        [("Associated Press", "rig explosion"), ("Wikipedia", "Deepwater_Horizon_(drilling_rig)")],
    ),
    Ev(
        "dwh-sinks",
        "2010-04-22",
        DWH,
        "Deepwater Horizon oil spill: The burning Deepwater Horizon rig sinks about 40 miles "
        "off the coast of Louisiana.",
        ["Gulf of Mexico", "Transocean", "Louisiana", "United States Coast Guard"],
        [("NPR", "rig sinks"), ("Wikipedia", "Deepwater_Horizon_(drilling_rig)")],
    ),
    Ev(
        "dwh-estimate",
        "2010-05-27",
        DWH,
        "U.S. scientists raise their estimate of the Gulf leak to between 12,000 and 19,000 "
        "barrels a day, making it the worst oil spill in American history.",
        ["Gulf of Mexico", "BP", "United States"],
        [("Reuters", "flow rate estimate"), ("NPR", "worst spill")],
    ),
    Ev(
        "dwh-topkill",
        "2010-05-29",
        DWH,
        'BP says its "top kill" attempt to plug the leaking well with heavy drilling mud has '
        "failed.",
        ["BP", "Gulf of Mexico"],
        [("BBC News", "top kill fails")],
    ),
    Ev(
        "dwh-fund",
        "2010-06-16",
        DWH,
        "After meeting President Barack Obama, BP agrees to set up a $20 billion fund for "
        "victims of the Gulf of Mexico oil spill and suspends its dividend.",
        ["BP", "Barack Obama", "Gulf of Mexico", "United States"],
        [("The Guardian", "bp 20bn fund"), ("Associated Press", "bp escrow fund")],
    ),
    Ev(
        "dwh-cap",
        "2010-07-15",
        DWH,
        "Deepwater Horizon oil spill: BP says oil has stopped flowing into the Gulf of Mexico "
        "for the first time in 87 days after a new cap is fitted to the well.",
        ["BP", "Gulf of Mexico"],
        [("BBC News", "oil flow stopped"), ("NPR", "cap holds")],
    ),
    Ev(
        "dwh-hayward",
        "2010-07-27",
        DWH,
        "BP confirms that chief executive Tony Hayward will step down and be replaced by Bob "
        "Dudley, as it reports a record quarterly loss.",
        ["BP", "Tony Hayward", "Bob Dudley"],
        [("The Guardian", "hayward out"), ("Reuters", "bp record loss")],
    ),
    Ev(
        "dwh-dead",
        "2010-09-19",
        DWH,
        'The U.S. government declares BP\'s Macondo well "effectively dead" after a relief '
        "well seals it with cement.",
        ["BP", "Gulf of Mexico", "United States"],
        [("Associated Press", "well dead"), ("Wikipedia", "Macondo_Prospect")],
    ),
    Ev(
        "dwh-plea",
        "2012-11-15",
        DWH,
        "BP agrees to plead guilty to 14 criminal charges, including manslaughter, over the "
        "Deepwater Horizon disaster and to pay $4.5 billion in penalties.",
        ["BP", "United States Department of Justice", "United States"],
        [("Reuters", "bp guilty plea"), ("NPR", "bp criminal charges")],
    ),
    Ev(
        "dwh-negligence",
        "2014-09-04",
        DWH,
        "A U.S. federal judge in New Orleans rules that BP acted with gross negligence in the "
        "Gulf oil spill, exposing it to billions of dollars in extra fines.",
        ["BP", "New Orleans", "Louisiana"],
        [("Associated Press", "gross negligence ruling"), ("BBC News", "bp negligent")],
    ),
    Ev(
        "dwh-settle",
        "2015-07-02",
        DWH,
        "Deepwater Horizon oil spill: BP agrees to pay $18.7 billion to settle claims from the "
        "U.S. government and five Gulf Coast states.",
        ["BP", "United States", "Gulf of Mexico", "Louisiana"],
        [("Reuters", "bp settlement"), ("The Guardian", "bp 18.7bn")],
    ),
    # --- 2010 Copiapó mining accident --------------------------------------------------
    Ev(
        "chi-collapse",
        "2010-08-05",
        CHI,
        "A cave-in at the San José copper and gold mine near Copiapó in northern Chile traps "
        "33 miners about 700 metres underground.",
        ["Chile", "Copiapó", "San José mine", "Atacama Region"],
        [("BBC News", "chile miners trapped"), ("La Tercera", "derrumbe mina san jose")],
    ),
    Ev(
        "chi-note",
        "2010-08-22",
        CHI,
        "2010 Copiapó mining accident: A drill probe brings up a note saying that all 33 "
        "trapped miners are alive in a refuge, 17 days after the collapse.",
        ["Chile", "San José mine", "Sebastián Piñera"],
        [("La Tercera", "estamos bien en el refugio"), ("Reuters", "miners alive")],
    ),
    Ev(
        "chi-drill",
        "2010-08-30",
        CHI,
        "Drilling starts on the first rescue shaft toward the miners trapped in the San José "
        "mine; officials warn the rescue could take months.",
        ["Chile", "San José mine", "Copiapó"],
        [
            ("Associated Press", "rescue drilling begins"),
            ("Folha de S.Paulo", "resgate mineiros chile"),
        ],
    ),
    Ev(
        "chi-planb",
        "2010-09-17",
        CHI,
        "A second drill, known as Plan B, breaks through to a workshop area near the trapped "
        "miners at the San José mine.",
        ["Chile", "San José mine"],
        [("La Tercera", "plan b"), ("BBC News", "drill breakthrough")],
    ),
    Ev(
        "chi-shaft",
        "2010-10-09",
        CHI,
        "2010 Copiapó mining accident: The Plan B drill reaches the trapped miners, completing "
        "an escape shaft more than 600 metres deep.",
        ["Chile", "San José mine", "Copiapó"],
        [("Reuters", "shaft complete"), ("Folha de S.Paulo", "perfuracao chega aos mineiros")],
    ),
    Ev(
        "chi-rescue",
        "2010-10-13",
        CHI,
        "2010 Copiapó mining accident: All 33 miners are lifted to the surface one by one in "
        "the Fénix capsule after 69 days underground; shift foreman Luis Urzúa is the last "
        "out and is greeted by President Sebastián Piñera.",
        ["Chile", "Sebastián Piñera", "Copiapó", "San José mine", "Atacama Region"],
        [
            ("BBC News", "all 33 rescued"),
            ("La Tercera", "rescate de los 33"),
            ("Folha de S.Paulo", "mineiros resgatados"),
        ],
    ),
    Ev(
        "chi-closed",
        "2013-08-01",
        CHI,
        "Chilean prosecutors close their investigation into the San José mine collapse "
        "without charging the mine's owners.",
        ["Chile", "San José mine", "Atacama Region"],
        [("Associated Press", "no charges mine owners"), ("La Tercera", "fiscalia cierra")],
    ),
    # --- 2008 Mumbai attacks ---------------------------------------------------------------
    Ev(
        "mum-attacks",
        "2008-11-26",
        MUM,
        "Gunmen launch coordinated attacks across Mumbai, striking the Chhatrapati Shivaji "
        "Terminus railway station, the Taj Mahal Palace and Oberoi Trident hotels, a café and "
        "a Jewish centre.",
        ["Mumbai", "India", "Taj Mahal Palace Hotel"],
        [("The Times of India", "mumbai terror attacks"), ("BBC News", "mumbai gunmen")],
    ),
    Ev(
        "mum-taj",
        "2008-11-29",
        MUM,
        "2008 Mumbai attacks: Indian commandos end the siege of the Taj Mahal Palace hotel, "
        "killing the last gunmen; more than 160 people have died in the attacks.",
        ["Mumbai", "India", "Taj Mahal Palace Hotel", "National Security Guard"],
        [("The Times of India", "taj operation over"), ("Reuters", "siege ends")],
    ),
    Ev(
        "mum-patil",
        "2008-11-30",
        MUM,
        "Indian Home Minister Shivraj Patil resigns, taking responsibility for the security "
        "failures exposed by the Mumbai attacks.",
        ["India", "Shivraj Patil", "Mumbai"],
        [("The Times of India", "patil quits"), ("BBC News", "home minister resigns")],
    ),
    Ev(
        "mum-kasab-pk",
        "2009-01-07",
        MUM,
        "Pakistan acknowledges that Ajmal Kasab, the only gunman captured alive in the Mumbai "
        "attacks, is a Pakistani citizen.",
        ["Pakistan", "Ajmal Kasab", "India"],
        [("Dawn", "kasab pakistani"), ("Reuters", "pakistan admits kasab")],
        [("pk-kashmir", "Pakistan, India")],
    ),
    Ev(
        "mum-convict",
        "2010-05-03",
        MUM,
        "2008 Mumbai attacks: A special court in Mumbai convicts Ajmal Kasab of murder and of "
        "waging war against India.",
        ["Mumbai", "Ajmal Kasab", "India"],
        [("The Times of India", "kasab guilty"), ("BBC News", "kasab convicted")],
    ),
    Ev(
        "mum-death",
        "2010-05-06",
        MUM,
        "Ajmal Kasab is sentenced to death for his part in the Mumbai attacks.",
        ["Mumbai", "Ajmal Kasab"],
        [("The Times of India", "kasab death sentence")],
    ),
    Ev(
        "mum-hanged",
        "2012-11-21",
        MUM,
        "2008 Mumbai attacks: Ajmal Kasab is executed by hanging at Yerwada jail in Pune.",
        ["Ajmal Kasab", "Pune", "India"],
        [("The Times of India", "kasab hanged"), ("Dawn", "kasab executed")],
    ),
    Ev(
        "mum-headley",
        "2013-01-24",
        MUM,
        "A U.S. federal court in Chicago sentences David Headley to 35 years in prison for "
        "helping plan the Mumbai attacks.",
        ["David Headley", "Chicago", "Lashkar-e-Taiba"],
        [("Associated Press", "headley sentenced"), ("The Times of India", "headley 35 years")],
    ),
    Ev(
        "mum-rana",
        "2025-04-10",
        MUM,
        "Tahawwur Rana, a Pakistani-born Canadian businessman accused of helping plan the 2008 "
        "Mumbai attacks, is extradited from the United States to India.",
        ["Tahawwur Rana", "India", "Mumbai", "David Headley"],
        [("The Times of India", "rana extradited"), ("Reuters", "rana extradition")],
    ),
    # --- 2010 eruptions of Eyjafjallajökull ---------------------------------------------
    Ev(
        "eyj-fissure",
        "2010-03-20",
        EYJ,
        "A volcanic eruption begins at Fimmvörðuháls, a pass beside the Eyjafjallajökull "
        "glacier in southern Iceland, and about 500 people are evacuated.",
        ["Iceland", "Eyjafjallajökull", "Fimmvörðuháls"],
        [("RÚV", "eldgos fimmvorduhals"), ("BBC News", "iceland eruption")],
    ),
    Ev(
        "eyj-summit",
        "2010-04-14",
        EYJ,
        "2010 eruptions of Eyjafjallajökull: A second, more explosive eruption begins under "
        "the ice cap of Eyjafjallajökull, sending meltwater floods down nearby valleys and "
        "forcing hundreds from their homes.",
        ["Iceland", "Eyjafjallajökull"],
        [("RÚV", "eldgos i jokli"), ("Reuters", "new eruption floods")],
    ),
    Ev(
        "eyj-closure",
        "2010-04-15",
        EYJ,
        "A cloud of volcanic ash from Iceland forces the closure of airspace over the United "
        "Kingdom, Ireland and much of Scandinavia, grounding thousands of flights.",
        ["Iceland", "Eurocontrol", "United Kingdom", "Air travel"],
        [("BBC News", "uk airspace closed"), ("The Guardian", "ash cloud flights")],
    ),
    Ev(
        "eyj-stranded",
        "2010-04-18",
        EYJ,
        "2010 eruptions of Eyjafjallajökull: Most of Europe's airspace stays closed for a "
        "fourth day, leaving millions of travellers stranded.",
        ["Eurocontrol", "Air travel", "European Union"],
        [("Reuters", "europe airspace closed"), ("France 24", "nuage de cendres")],
    ),
    Ev(
        "eyj-reopen",
        "2010-04-20",
        EYJ,
        "Flights resume across much of Europe as aviation authorities reopen airspace under "
        "new rules that tolerate low concentrations of ash.",
        ["Eurocontrol", "Air travel", "United Kingdom"],
        [("BBC News", "flights resume"), ("Associated Press", "airspace reopens")],
    ),
    Ev(
        "eyj-may",
        "2010-05-09",
        EYJ,
        "Renewed drift of ash from Eyjafjallajökull closes airports in northern Spain, "
        "Portugal and northern Italy, and transatlantic flights are rerouted.",
        ["Eyjafjallajökull", "Air travel", "Eurocontrol"],
        [("Reuters", "spain airports closed"), ("Folha de S.Paulo", "cinzas vulcao voos")],
    ),
    Ev(
        "eyj-grimsvotn",
        "2011-05-21",
        None,
        "The Grímsvötn volcano under Iceland's Vatnajökull ice cap erupts, sending a plume of "
        "ash about 20 kilometres into the sky.",
        ["Iceland", "Grímsvötn", "Vatnajökull"],
        [("RÚV", "gos i grimsvotnum"), ("BBC News", "grimsvotn eruption")],
        [("eyj-summit", "Iceland, Eyjafjallajökull"), ("eyj-closure", "Air travel, Iceland")],
    ),
    Ev(
        "eyj-grimsvotn-ash",
        "2011-05-24",
        None,
        "Ash from Iceland's Grímsvötn volcano forces airlines to cancel hundreds of flights in "
        "Scotland and northern Europe.",
        ["Grímsvötn", "Air travel", "Eurocontrol", "Scotland"],
        [("BBC News", "scotland flights cancelled"), ("Reuters", "ash cancels flights")],
        [
            ("eyj-grimsvotn", "Grímsvötn, Iceland"),
            ("eyj-stranded", "Eurocontrol, Air travel"),
            ("eyj-reopen", "Air travel"),
        ],
    ),
    # --- Brexit ---------------------------------------------------------------------------
    Ev(
        "brx-vote",
        "2016-06-23",
        BRX,
        "Voters across the United Kingdom go to the polls in a referendum on whether to stay "
        "in or leave the European Union.",
        ["United Kingdom", "European Union", "David Cameron"],
        [("BBC News", "eu referendum polls open"), ("The Guardian", "referendum day")],
    ),
    Ev(
        "brx-result",
        "2016-06-24",
        BRX,
        "Brexit: The United Kingdom votes to leave the European Union by 51.9% to 48.1%, and "
        "Prime Minister David Cameron says he will step down.",
        ["United Kingdom", "European Union", "David Cameron"],
        [("BBC News", "uk votes to leave"), ("Reuters", "cameron to quit")],
    ),
    Ev(
        "brx-a50",
        "2017-03-29",
        BRX,
        "Brexit: Britain formally triggers Article 50 of the Treaty on European Union, "
        "starting a two-year countdown to its departure.",
        ["United Kingdom", "European Union", "Theresa May"],
        [
            ("The Guardian", "article 50 triggered"),
            ("Wikipedia", "Article_50_of_the_Treaty_on_European_Union"),
        ],
    ),
    Ev(
        "brx-endorse",
        "2018-11-25",
        BRX,
        "Leaders of the 27 other EU countries endorse the withdrawal agreement negotiated "
        "with Theresa May's government at a summit in Brussels.",
        ["European Union", "Theresa May", "Brussels"],
        [("Reuters", "eu leaders endorse deal"), ("France 24", "accord de retrait")],
    ),
    Ev(
        "brx-defeat",
        "2019-01-15",
        BRX,
        "Brexit: The House of Commons rejects Theresa May's withdrawal agreement by 432 votes "
        "to 202, the heaviest defeat for a government in modern times.",
        ["United Kingdom", "Theresa May", "House of Commons"],
        [("BBC News", "commons rejects deal"), ("The Guardian", "may historic defeat")],
    ),
    Ev(
        "brx-may",
        "2019-05-24",
        BRX,
        "Theresa May announces she will resign as Conservative Party leader on 7 June after "
        "failing to get her Brexit deal through Parliament.",
        ["Theresa May", "United Kingdom", "Conservative Party"],
        [("BBC News", "may resigns"), ("Reuters", "may quits")],
    ),
    Ev(
        "brx-election",
        "2019-12-12",
        BRX,
        "Boris Johnson's Conservatives win a large majority in a UK general election fought "
        "largely over Brexit.",
        ["Boris Johnson", "United Kingdom", "Conservative Party"],
        [("BBC News", "election results"), ("The Guardian", "johnson majority")],
    ),
    Ev(
        "brx-leave",
        "2020-01-31",
        BRX,
        "Brexit: The United Kingdom leaves the European Union at 11 p.m. GMT, entering a "
        "transition period that lasts until the end of the year.",
        ["United Kingdom", "European Union", "Boris Johnson"],
        [("BBC News", "uk leaves eu"), ("France 24", "le royaume-uni quitte l-ue")],
    ),
    Ev(
        "brx-tca",
        "2020-12-24",
        BRX,
        "The United Kingdom and the European Union agree a trade and cooperation deal days "
        "before the Brexit transition period runs out.",
        ["United Kingdom", "European Union", "Boris Johnson", "Ursula von der Leyen"],
        [("Reuters", "trade deal agreed"), ("The Guardian", "christmas eve deal")],
    ),
    Ev(
        "brx-windsor",
        "2023-02-27",
        BRX,
        "Rishi Sunak and Ursula von der Leyen announce the Windsor Framework, a revised deal "
        "on post-Brexit trade rules for Northern Ireland.",
        ["Northern Ireland", "Ursula von der Leyen", "European Union", "United Kingdom"],
        [("BBC News", "windsor framework"), ("Wikipedia", "Windsor_Framework")],
    ),
]

# Outlet -> (base URL, URL style)
OUTLETS: dict[str, str] = {
    "BBC News": "https://www.bbc.co.uk/news/world-{n8}",
    "Reuters": "https://www.reuters.com/article/us-{words}-id{upper}",
    "Al Jazeera English": "https://www.aljazeera.com/news/{y}/{m}/{d}/{words}",
    "The Guardian": "https://www.theguardian.com/world/{y}/{mon}/{dd}/{words}",
    "NHK World": "https://www3.nhk.or.jp/nhkworld/en/news/{y}{mm}{dd}_{n2}/",
    "The Japan Times": "https://www.japantimes.co.jp/news/{y}/{mm}/{dd}/national/{words}/",
    "Dawn": "https://www.dawn.com/news/{n7}/{words}",
    "The Express Tribune": "https://tribune.com.pk/story/{n7}/{words}",
    "Associated Press": "https://apnews.com/article/{words}-{hex}",
    "France 24": "https://www.france24.com/en/{y}{mm}{dd}-{words}",
    "RFI": "https://www.rfi.fr/en/africa/{y}{mm}{dd}-{words}",
    "Le Monde": "https://www.lemonde.fr/afrique/article/{y}/{mm}/{dd}/{words}_{n7}_3212.html",
    "Ahram Online": "https://english.ahram.org.eg/NewsContent/1/64/{n6}/Egypt/Politics-/{words}.aspx",
    "NPR": "https://www.npr.org/{y}/{mm}/{dd}/{n9}/{words}",
    "La Tercera": "https://www.latercera.com/nacional/noticia/{words}/{n6}/",
    "Folha de S.Paulo": "https://www1.folha.uol.com.br/mundo/{y}/{mm}/{n6}-{words}.shtml",
    "The Times of India": "https://timesofindia.indiatimes.com/city/mumbai/{words}/articleshow/{n8}.cms",
    "RÚV": "https://www.ruv.is/frett/{y}/{mm}/{dd}/{words}",
    "Wikipedia": "https://en.wikipedia.org/wiki/{title}",
}


def source_url(outlet: str, words: str, ev: Ev) -> str:
    digest = hashlib.sha256(f"{outlet}|{words}|{ev.key}".encode()).hexdigest()
    number = int(digest[:15], 16)
    d = ev.date
    return OUTLETS[outlet].format(
        y=d.year,
        m=d.month,
        d=d.day,
        mm=f"{d.month:02d}",
        dd=f"{d.day:02d}",
        mon=d.strftime("%b").lower(),
        words=page_slug(words),
        title=words,
        n2=f"{number % 100:02d}",
        n6=number % 10**6,
        n7=number % 10**7,
        n8=number % 10**8,
        n9=number % 10**9,
        hex=digest[:32],
        upper=digest[:12].upper(),
    )


def related_links(ev: Ev, by_key: dict[str, Ev]) -> list[tuple[Ev, list[str]]]:
    """The story neighbours (previous, next, first, last) then the hand-picked extras."""
    picked: list[Ev] = []
    if ev.story is not None:
        chain = sorted((e for e in EVENTS if e.story == ev.story), key=lambda e: e.day)
        at = chain.index(ev)
        for i in (at - 1, at + 1, 0, len(chain) - 1):
            if 0 <= i < len(chain) and chain[i] is not ev and chain[i] not in picked:
                picked.append(chain[i])
    out: list[tuple[Ev, list[str]]] = []
    for other in picked:
        contexts = [t for t in other.tags if t in ev.tags][:3] or other.tags[:1]
        far = abs((other.date - ev.date).days) > 60
        if far and other.story and other.story not in contexts:
            contexts.append(other.story)  # a long-range link names the story itself
        out.append((other, contexts))
    for key, names in ev.extra:
        other = by_key[key]
        if other not in picked:
            out.append((other, [n.strip() for n in names.split(",")]))
    return out


def render(ev: Ev, by_key: dict[str, Ev]) -> str:
    path = ev.path
    d = ev.date
    lines = [
        f"Formats: [HTML]({path}.html)  [JSON]({path}.json)  [XML]({path}.xml)  ",
        "",
        f"### [{d.year}-{d.month:02d}-{d.day}](/news/{d.year}/{d.month:02d}/{d.day}/index.md)",
        "",
    ]
    if ev.story:
        lines.append(f"##### {ev.story}")
    lines += [f"#  {ev.summary} ", "", "", "", ""]
    if ev.sources:
        lines += ["### Sources:", ""]
        for n, (outlet, words) in enumerate(ev.sources, 1):
            lines.append(f"{n}. [{outlet}]({source_url(outlet, words, ev)})")
        lines.append("")
    links = related_links(ev, by_key)
    if links:
        lines += ["### Related:", ""]
        for n, (other, contexts) in enumerate(links, 1):
            lines.append(
                f"{n}. [ {other.summary} ]({other.path}.md) _Context: {', '.join(contexts)}_"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    by_key = {ev.key: ev for ev in EVENTS}
    assert len(by_key) == len(EVENTS), "duplicate keys"
    days: dict[date, list[Ev]] = {}
    for ev in EVENTS:
        days.setdefault(ev.date, []).append(ev)
        target = ROOT / (ev.path.lstrip("/") + ".md")
        if ev.verbatim:
            if not target.exists():
                print(f"missing verbatim page {target}", file=sys.stderr)
                return 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(ev, by_key), encoding="utf-8", newline="\n")
    for d, evs in days.items():
        index = ROOT / f"news/{d.year}/{d.month:02d}/{d.day}/index.md"
        body = [f"# {d.isoformat()}", ""]
        body += [f"- [{ev.summary}]({ev.path}.md)" for ev in evs]
        index.write_text("\n".join(body) + "\n", encoding="utf-8", newline="\n")
    print(f"{len(EVENTS)} events on {len(days)} days in {ROOT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
