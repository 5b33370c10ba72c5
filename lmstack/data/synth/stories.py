"""Short stories about the people of the world, consistent with their facts, in English and Chinese."""

from __future__ import annotations

import random
from collections.abc import Iterator

from lmstack.data.synth.facts import LANGS, person_slots, pronouns
from lmstack.data.synth.registry import doc, section
from lmstack.data.synth.world import Person, Term, World

TIMES = [Term("morning", "早上"), Term("afternoon", "下午"), Term("evening", "晚上")]

def _slots(world: World, person: Person, lang: str, rng: random.Random) -> dict[str, str]:
    friend = world.person(person.friend)
    restaurant = next(r for r in world.restaurants if r.place == person.home)
    dish, dish2 = rng.sample(restaurant.dishes[:5], 2)
    return person_slots(world, person, lang) | pronouns(person, lang, named=False) | {
        "name": person.name(lang),
        "first": person.first(lang),
        "friend_first": friend.first(lang),
        "fhome": friend.home.name(lang),
        "flandmark": friend.home.landmark(lang),
        "ffood": friend.food(lang),
        "fobj": ("her" if friend.female else "him") if lang == "en" else ("她" if friend.female else "他"),
        "obj": ("her" if person.female else "him") if lang == "en" else ("她" if person.female else "他"),
        "landmark": person.home.landmark(lang),
        "restaurant": restaurant.name(lang),
        "dish": dish.name(lang), "price": str(dish.price),
        "dish2": dish2.name(lang), "price2": str(dish2.price),
        "total": str(dish.price + dish2.price),
        "time": rng.choice(TIMES)(lang),
        "n": str(rng.randint(2, 10)),
    }


STORIES: dict[str, tuple[str, str]] = {
    "dinner": (
        "One {time}, {name} walked to {restaurant} in {home}. There {s} met {p} best friend, {friend}. "
        "{friend_first} ordered the {dish} and {first} ordered the {dish2}. The {dish} cost {price} dollars and "
        "the {dish2} cost {price2} dollars, so together they paid {total} dollars. After dinner they walked past "
        "the {landmark} and talked about {hobby} until it was late.",
        "一天{time}，{name}走进{home}的{restaurant}，在那里遇到了{p}好朋友{friend}。{friend_first}点了{dish}，"
        "{first}点了{dish2}。{dish}{price}元，{dish2}{price2}元，他们一共付了{total}元。饭后，他们走过{landmark}，"
        "一直聊{hobby}聊到很晚。",
    ),
    "lost_pet": (
        "One {time}, {first}'s {species}, {pet}, ran away from home. {name} looked everywhere in {home}. "
        "{S} searched near the {landmark}, but {pet} was not there. Then {friend} came to help. At last they "
        "found {pet} hiding under a table at {restaurant}. {first} gave {pet} a hug and took it home.",
        "一天{time}，{first}的{species}{pet}从家里跑丢了。{name}在{home}到处寻找。{s}在{landmark}附近找了找，"
        "可是{pet}不在那里。后来，{friend}来帮忙。最后，他们在{restaurant}的一张桌子下面找到了{pet}。"
        "{first}抱了抱{pet}，把它带回了家。",
    ),
    "workday": (
        "{name} is {a_job} in {home}. Today was a busy day: {s} helped {n} people before lunch. For lunch {s} "
        "ate {food}, {p} favourite food. After work, {s} relaxed by {hobby}, and then {s} went to sleep early.",
        "{name}是{home}的一名{job}。今天{s}很忙，午饭前就帮助了{n}个人。午饭时，{s}吃了最喜欢的{food}。"
        "下班后，{s}靠{hobby}放松一下，然后早早睡觉了。",
    ),
    "visit": (
        "{name} decided to visit {p} friend {friend} in {fhome}. {S} left {home} early in the {time}. "
        "{friend_first} showed {obj} the {flandmark}, and they took many photos. Then they ate {ffood} together. "
        "When {first} got back to {home}, {s} said it had been a wonderful day.",
        "{name}决定去{fhome}看望朋友{friend}。{s}{time}很早就从{home}出发了。{friend_first}带{obj}参观了{flandmark}，"
        "他们拍了很多照片。然后，他们一起吃了{ffood}。{first}回到{home}以后，说这真是美好的一天。",
    ),
}


def applies(world: World, person: Person, plot: str) -> bool:
    if plot == "lost_pet":
        return person.pet is not None
    if plot == "visit":
        return world.person(person.friend).home != person.home
    return True


@section("stories", docs=2400)
def stories(world: World, rng: random.Random) -> Iterator[dict]:
    """One plot about one person at a time, told in English, then in Chinese."""
    while True:
        person = rng.choice(world.people)
        plot = rng.choice([p for p in STORIES if applies(world, person, p)])
        state = rng.getstate()
        for lang, template in zip(LANGS, STORIES[plot]):
            rng.setstate(state)  # the same random details in both languages
            yield doc(template.format(**_slots(world, person, lang, rng)), "story", lang)
