"""What a tool-calling model can call, below every layer that uses it: the tools' OpenAI-style specs and a
safe calculator. The synthetic tool-use data (``data.synth.tools``) and the chat tool loop (``chat.tools``) share
them."""
