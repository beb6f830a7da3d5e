"""The bus: MQTT transport, topic map, payload codecs, embedded broker. Imports nothing of ours."""
