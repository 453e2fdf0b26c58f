"""The Rasa assistant: domain, training data, the action server (bot.actions) and the process runner."""
