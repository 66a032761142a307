from configuration_multitask.configuration_multitask import *  # noqa: F401,F403  (replaced by the real file on save)
