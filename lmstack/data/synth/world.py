"""A small invented world, drawn from a seed: people, the towns they live in, their pets, and restaurants.

Every name is a ``Term`` holding its English and Chinese form, so one fact renders in both languages and
the corpus carries parallel sentences for free.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    en: str
    zh: str

    def __call__(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


@dataclass(frozen=True)
class Place:
    name: Term
    kind: Term
    landmark: Term
    population: int


@dataclass(frozen=True)
class Pet:
    species: Term
    measure: str  # the Chinese classifier: 一只猫, 一条金鱼
    colour: Term
    name: Term


@dataclass(frozen=True)
class Person:
    first: Term
    last: Term
    female: bool
    age: int
    home: Place
    job: Term
    hobby: Term
    food: Term
    pet: Pet | None
    friend: str  # the friend's English first name; look it up with World.person()

    def name(self, lang: str) -> str:
        return f"{self.first.en} {self.last.en}" if lang == "en" else f"{self.first.zh}·{self.last.zh}"


@dataclass(frozen=True)
class Dish:
    name: Term
    plural: str  # English plural: "tomato soups", "plates of dumplings"
    course: str  # "main", "dessert" or "drink"
    price: int  # whole dollars (元), so order totals are exact arithmetic


@dataclass(frozen=True)
class Restaurant:
    name: Term
    place: Place
    dishes: tuple[Dish, ...]


@dataclass(frozen=True)
class World:
    seed: int
    places: tuple[Place, ...]
    people: tuple[Person, ...]
    restaurants: tuple[Restaurant, ...]

    def person(self, first_en: str) -> Person:
        return next(p for p in self.people if p.first.en == first_en)

    def residents(self, place: Place) -> list[Person]:
        return [p for p in self.people if p.home == place]

    def to_dict(self) -> dict:
        """Plain facts for world.json: what later stages retrieve, ask about and check answers against."""
        return {
            "seed": self.seed,
            "places": [
                {"name": _t(p.name), "kind": _t(p.kind), "landmark": _t(p.landmark), "population": p.population}
                for p in self.places
            ],
            "people": [
                {
                    "name": {"en": p.name("en"), "zh": p.name("zh")},
                    "gender": "female" if p.female else "male",
                    "age": p.age,
                    "home": _t(p.home.name),
                    "job": _t(p.job),
                    "hobby": _t(p.hobby),
                    "food": _t(p.food),
                    "pet": p.pet and {"species": _t(p.pet.species), "colour": _t(p.pet.colour), "name": _t(p.pet.name)},
                    "friend": _t(self.person(p.friend).first),
                }
                for p in self.people
            ],
            "restaurants": [
                {
                    "name": _t(r.name),
                    "place": _t(r.place.name),
                    "menu": [{"name": _t(d.name), "course": d.course, "price": d.price} for d in r.dishes],
                }
                for r in self.restaurants
            ],
        }


def _t(term: Term) -> dict:
    return {"en": term.en, "zh": term.zh}


def _terms(rows: str) -> list[Term]:
    """Parse ``english | 中文`` lines."""
    return [Term(*(s.strip() for s in line.split("|"))) for line in rows.strip().splitlines()]


FEMALE = _terms("""
Mira | 米拉
Lena | 莉娜
Ines | 伊内丝
Nora | 诺拉
Ada | 艾达
Clara | 克拉拉
Elsa | 埃尔莎
Ivy | 艾薇
Rosa | 罗莎
Vera | 薇拉
Sofia | 索菲亚
Greta | 格蕾塔
Iris | 艾丽丝
Maya | 玛雅
Ruth | 露丝
Hana | 哈娜
""")
MALE = _terms("""
Tomas | 托马斯
Oskar | 奥斯卡
Felix | 费利克斯
Hugo | 雨果
Milo | 米洛
Jonas | 约纳斯
Anton | 安东
Leo | 利奥
Emil | 埃米尔
Otto | 奥托
Luca | 卢卡
Theo | 西奥
Bruno | 布鲁诺
Kai | 凯
Nils | 尼尔斯
Ravi | 拉维
""")
SURNAMES = _terms("""
Castell | 卡斯特
Brand | 布兰德
Holm | 霍尔姆
Varga | 瓦尔加
Lund | 伦德
Moreau | 莫罗
Okafor | 奥卡福
Reyes | 雷耶斯
Falk | 福尔克
Weber | 韦伯
Quill | 奎尔
Thorne | 索恩
""")
TOWNS = _terms("""
Bellhaven | 贝尔港
Stonebridge | 石桥镇
Marlow Bay | 马洛湾
Eastwick | 东维克
Fernvale | 蕨谷
Redcliff | 红崖
Northmere | 北湖镇
Ashford | 灰渡
""")
TOWN_KINDS = _terms("""
port town by the sea | 海边的港口小镇
village in the mountains | 山里的村庄
town on a wide river | 大河边的小镇
busy market town | 热闹的集镇
quiet fishing village | 安静的渔村
town on a small island | 小岛上的小镇
""")
LANDMARKS = _terms("""
lighthouse | 灯塔
old stone bridge | 古老的石桥
clock tower | 钟楼
windmill | 风车
botanical garden | 植物园
castle | 城堡
waterfall | 瀑布
night market | 夜市
""")
JOBS = _terms("""
baker | 面包师
teacher | 老师
doctor | 医生
fisher | 渔民
carpenter | 木匠
painter | 画家
gardener | 园丁
librarian | 图书管理员
nurse | 护士
engineer | 工程师
farmer | 农民
musician | 音乐家
cook | 厨师
tailor | 裁缝
potter | 陶艺师
postman | 邮递员
""")
HOBBIES = _terms("""
reading books | 看书
playing chess | 下棋
swimming | 游泳
painting | 画画
singing | 唱歌
hiking | 爬山
fishing | 钓鱼
cooking | 做饭
dancing | 跳舞
playing the piano | 弹钢琴
""")
FOODS = _terms("""
apples | 苹果
noodles | 面条
dumplings | 饺子
rice | 米饭
cheese | 奶酪
pears | 梨
honey cake | 蜂蜜蛋糕
tomato soup | 番茄汤
grilled fish | 烤鱼
strawberries | 草莓
""")
PET_NAMES = _terms("""
Pim | 皮姆
Biscuit | 饼干
Soot | 煤球
Pepper | 胡椒
Luna | 露娜
Max | 麦克斯
Tofu | 豆腐
Mochi | 麻糬
Ziggy | 齐吉
Button | 纽扣
Clover | 三叶草
Pudding | 布丁
""")
# species | 中文 | classifier | colours it comes in
SPECIES = [
    (Term("cat", "猫"), "只", _terms("grey | 灰色\nblack | 黑色\nwhite | 白色\norange | 橘色")),
    (Term("dog", "狗"), "只", _terms("brown | 棕色\nblack | 黑色\nwhite | 白色")),
    (Term("rabbit", "兔子"), "只", _terms("white | 白色\ngrey | 灰色\nbrown | 棕色")),
    (Term("parrot", "鹦鹉"), "只", _terms("green | 绿色\nblue | 蓝色\nred | 红色")),
    (Term("turtle", "乌龟"), "只", _terms("green | 绿色\nbrown | 棕色")),
    (Term("goldfish", "金鱼"), "条", _terms("orange | 橙色\nred | 红色")),
]
# english | english plural | 中文 | course | typical price
DISHES = [
    (Term(en, zh), plural, course, int(price))
    for en, plural, zh, course, price in (
        (s.strip() for s in line.split("|"))
        for line in """
tomato soup | tomato soups | 番茄汤 | main | 5
pumpkin soup | pumpkin soups | 南瓜汤 | main | 6
fried rice | plates of fried rice | 炒饭 | main | 8
dumplings | plates of dumplings | 饺子 | main | 9
beef noodles | bowls of beef noodles | 牛肉面 | main | 12
roast chicken | roast chickens | 烤鸡 | main | 15
fish stew | fish stews | 炖鱼 | main | 14
mushroom pie | mushroom pies | 蘑菇派 | main | 10
vegetable curry | vegetable curries | 蔬菜咖喱 | main | 11
spring rolls | plates of spring rolls | 春卷 | main | 7
green salad | green salads | 蔬菜沙拉 | main | 6
cheese toast | cheese toasts | 奶酪吐司 | main | 4
apple cake | apple cakes | 苹果蛋糕 | dessert | 5
berry tart | berry tarts | 浆果挞 | dessert | 6
milk pudding | milk puddings | 牛奶布丁 | dessert | 4
pancakes | plates of pancakes | 煎饼 | dessert | 7
lemon tea | lemon teas | 柠檬茶 | drink | 3
green tea | green teas | 绿茶 | drink | 2
hot chocolate | hot chocolates | 热巧克力 | drink | 4
orange juice | orange juices | 橙汁 | drink | 3
""".strip().splitlines()
    )
]
RESTAURANTS = _terms("""
The Copper Kettle | 铜壶餐厅
The Blue Lantern | 蓝灯笼餐馆
Harbour Table | 港湾餐桌
The Golden Spoon | 金汤匙饭店
Willow House | 柳树小馆
The Red Door | 红门餐厅
Moonlight Kitchen | 月光厨房
The Old Mill | 老磨坊餐厅
""")


def build_world(seed: int) -> World:
    """Draw a world from ``seed``: the same seed always gives the same world."""
    rng = random.Random(seed)
    places = tuple(
        Place(name, rng.choice(TOWN_KINDS), landmark, rng.randrange(8, 120) * 100)
        for name, landmark in zip(TOWNS, rng.sample(LANDMARKS, len(TOWNS)))
    )
    firsts = [(t, True) for t in FEMALE] + [(t, False) for t in MALE]
    rng.shuffle(firsts)
    friends = [t.en for t, _ in firsts[1:] + firsts[:1]]  # a ring, so everyone has exactly one best friend
    people = tuple(
        Person(
            first=first,
            last=rng.choice(SURNAMES),
            female=female,
            age=rng.randint(19, 78),
            home=rng.choice(places),
            job=rng.choice(JOBS),
            hobby=rng.choice(HOBBIES),
            food=rng.choice(FOODS),
            pet=_pet(rng) if rng.random() < 0.75 else None,
            friend=friend,
        )
        for (first, female), friend in zip(firsts, friends)
    )
    restaurants = tuple(
        Restaurant(name, place, _menu(rng)) for name, place in zip(RESTAURANTS, rng.sample(places, len(places)))
    )
    return World(seed, places, people, restaurants)


def _pet(rng: random.Random) -> Pet:
    species, measure, colours = rng.choice(SPECIES)
    return Pet(species, measure, rng.choice(colours), rng.choice(PET_NAMES))


def _menu(rng: random.Random) -> tuple[Dish, ...]:
    mains = [d for d in DISHES if d[2] == "main"]
    others = [d for d in DISHES if d[2] != "main"]
    chosen = rng.sample(mains, 5) + rng.sample(others, 3)
    return tuple(Dish(name, plural, course, max(1, price + rng.randint(-1, 2)))
                 for name, plural, course, price in chosen)
