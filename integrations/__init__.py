"""Optional integrations (LangGraph, PostgreSQL, an OpenAI-compatible server), shipped as ``langchain_pad.integrations``."""
