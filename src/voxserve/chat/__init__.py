"""Voice conversations: an OpenAI-compatible LLM between streaming STT and streaming TTS."""
