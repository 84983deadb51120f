"""Hydra search-path plugin: makes the plugin's configs resolvable by ``--config-name`` alone.

Hydra discovers every module of the ``hydra_plugins`` namespace package. This one appends two
directories to the search path of any Hydra app (upstream's ``main_*.py`` included):

* the package's own configs (``directpred.yaml``, the embedded default, and its evaluation companions);
* the presets tree (``pretrain/<dataset>/<method>.yaml``, ``linear/<dataset>/<method>.yaml``).

It also registers the settings schema's config nodes (:mod:`solo_directpred.sololearn.schema`), which the
shipped configs list in their defaults.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class SoloDirectPredSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from solo_directpred.paths import configs_dir, presets_dir
        from solo_directpred.sololearn.schema import register_nodes

        register_nodes()  # the settings schema, before any config is composed

        search_path.append(provider="solo-directpred", path=f"file://{configs_dir()}")
        search_path.append(provider="solo-directpred-presets", path=f"file://{presets_dir()}")
