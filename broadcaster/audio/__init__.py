"""Broadcast audio: assembling (pauses, chime, repeats), loudness mastering, and the store.

Import the parts from their modules: ``broadcaster.audio.store`` is light, while
``broadcaster.audio.render`` loads pydub.
"""
