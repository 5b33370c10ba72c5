"""Small talk in the chat template's own markup: pretraining text that teaches a base model what a turn is.

Base models meet chat markup in pretraining (``<|im_start|>user ... <|im_end|>``), so instruction tuning
starts from a model that already knows where a reply begins and ends. The exchanges here are greetings and
pleasantries only, never the world's facts or tasks: answering those is what fine-tuning teaches.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from lmstack.text.chat_template import render
from lmstack.data.synth.registry import doc, section
from lmstack.data.synth.world import World

EXCHANGES = {
    "en": [("Hello!", "Hello! How can I help you?"), ("Hi there.", "Hi! What would you like to know?"),
           ("Thank you.", "You are welcome."), ("Thanks a lot!", "Glad to help."),
           ("Good morning.", "Good morning! What can I do for you?"), ("Goodbye.", "Goodbye, and have a nice day!"),
           ("Who are you?", "I am an assistant who knows this little world."),
           ("Can you help me?", "Of course. Ask me anything."), ("That is all.", "All right. Come back any time.")],
    "zh": [("你好！", "你好！有什么可以帮你的？"), ("嗨。", "嗨！你想知道什么？"), ("谢谢。", "不客气。"),
           ("太感谢了！", "很高兴能帮上忙。"), ("早上好。", "早上好！我能为你做什么？"), ("再见。", "再见，祝你愉快！"),
           ("你是谁？", "我是一个了解这个小世界的助手。"), ("你能帮我吗？", "当然可以，请问吧。"),
           ("就这些。", "好的，随时再来。")],
}
SYSTEM = {"en": "You are a helpful assistant.", "zh": "你是一个乐于助人的助手。"}


@section("chat", docs=600)
def small_talk(world: World, rng: random.Random) -> Iterator[dict]:
    while True:
        lang = rng.choice(("en", "zh"))
        messages = [{"role": "system", "content": SYSTEM[lang]}] if rng.random() < 0.3 else []
        for user, assistant in rng.sample(EXCHANGES[lang], rng.randint(1, 3)):
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        yield doc(render(messages), "chat", lang)
