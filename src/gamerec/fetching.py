"""The fetch stages: ``gamerec fetch steamspy``, ``fetch store`` and ``fetch owned``.

Part of the pipeline (``gamerec.pipeline`` exports them): each unpacks :class:`Settings` into
the plain arguments of the polite clients in :mod:`gamerec.dataio`, crawls into ``raw/``, and
returns a typed result (:mod:`gamerec.results`).
"""

from __future__ import annotations

from typing import Any

from gamerec.artifacts import Workspace, has_manifest
from gamerec.artifacts.processed import ITEMS_FILE, read_processed
from gamerec.errors import ConfigError
from gamerec.progress import Progress, quiet, reported
from gamerec.results import (
    DetailsFetched,
    FetchOwnedResult,
    FetchSteamspyResult,
    FetchStoreResult,
    PagesFetched,
)
from gamerec.settings import Settings

__all__ = ["fetch_owned", "fetch_steamspy", "fetch_store"]


def _retry_options(settings: Settings) -> dict[str, Any]:
    """How the Steam clients time out and retry."""
    options = settings.fetch
    return {
        "timeout_s": options.timeout_s,
        "max_retries": options.max_retries,
        "backoff_base_s": options.backoff_base_s,
        "backoff_max_s": options.backoff_max_s,
    }


def fetch_steamspy(
    settings: Settings,
    pages: int | None = None,
    details: int | None = None,
    progress: Progress = quiet,
) -> FetchSteamspyResult:
    """Crawl SteamSpy into ``raw/steamspy``: ``all`` pages, then appdetails of the top games.

    ``pages`` (default ``fetch.pages``: until the empty page) limits the pages from 0;
    ``details`` (default ``fetch.details``) is how many of the most-owned games get appdetails,
    the only source of genres and tags. Resumes where an earlier run stopped. Returns what was
    fetched, skipped and failed per phase.
    """
    from gamerec.dataio.crawl import crawl_items
    from gamerec.dataio.steamspy import (
        SavedAppdetails,
        SteamSpyClient,
        crawl_all_pages,
        page_records,
        top_appids_by_owners,
    )

    progress = reported(progress)
    options = settings.fetch
    pages = options.pages if pages is None else pages
    details = options.details if details is None else details
    root = Workspace.at(settings.data_dir).steamspy
    with SteamSpyClient(
        options.steamspy_url,
        all_interval_s=options.all_interval_s,
        request_interval_s=options.request_interval_s,
        **_retry_options(settings),
    ) as client:
        pages_summary = crawl_all_pages(client, root / "all", pages=pages, progress=progress)
        records = page_records(root / "all")
        appids = top_appids_by_owners(records, details)
        details_summary = crawl_items(
            appids, SavedAppdetails(root / "appdetails"), client.appdetails, client.http, progress
        ).counts("not_found")
    return FetchSteamspyResult(
        pages=PagesFetched(**pages_summary, apps=len(records)),
        appdetails=DetailsFetched(**details_summary),
        output=str(root),
    )


def _store_candidates(settings: Settings, details: int) -> tuple[list[int], str]:
    """The ``details`` most-owned appids of the workspace's catalog, and where they came from:
    ``processed/items.parquet`` once preprocess ran (the catalog recommended from), else the
    SteamSpy pages in ``raw/steamspy/all``, else the bundled catalog."""
    from gamerec.dataio.steamspy import page_records, top_appids_by_owners
    from gamerec.dataio.steamstore import most_owned_appids

    paths = Workspace.at(settings.data_dir)
    if has_manifest(paths.processed):
        items = read_processed(paths.processed, tables=("items",)).items
        return most_owned_appids(items, details), str(paths.processed / ITEMS_FILE)
    records = page_records(paths.steamspy / "all")
    if records:
        return top_appids_by_owners(records, details), str(paths.steamspy / "all")
    from gamerec.dataio.catalog import load_catalog_table
    from gamerec.dataio.datasets import BUNDLED_CATALOG, data_file

    return most_owned_appids(load_catalog_table(data_file(BUNDLED_CATALOG)), details), (
        f"the bundled catalog ({BUNDLED_CATALOG})"
    )


def fetch_store(
    settings: Settings,
    details: int | None = None,
    appids: list[str] | None = None,
    progress: Progress = quiet,
) -> FetchStoreResult:
    """Fetch the Steam store's ``appdetails`` (kind, base game, release date) into ``raw/store``.

    ``appids`` (texts such as ``"1086940,1245620"``) name the apps; without them, the ``details``
    (default ``fetch.store_details``) most-owned games of the workspace's catalog (see
    :func:`_store_candidates`). Apps the store does not show are remembered and not asked again;
    resumes where an earlier run stopped. Returns what was fetched, skipped and failed.
    """
    from gamerec.dataio.crawl import crawl_items
    from gamerec.dataio.steamstore import SavedStoreAnswers, StoreClient, parse_appids

    progress = reported(progress)
    options = settings.fetch
    if appids:
        wanted, source = parse_appids(appids), "--appids"
    else:
        count = options.store_details if details is None else details
        wanted, source = _store_candidates(settings, count)
    target = Workspace.at(settings.data_dir).store
    with StoreClient(
        options.store_url, interval_s=options.store_interval_s, **_retry_options(settings)
    ) as client:
        crawled = crawl_items(
            wanted, SavedStoreAnswers(target), client.appdetails, client.http, progress
        )
    return FetchStoreResult(appids_from=source, **crawled.counts("not_found"), output=str(target))


def fetch_owned(
    settings: Settings, steamids: list[str], progress: Progress = quiet
) -> FetchOwnedResult:
    """Fetch the game libraries of ``steamids`` (SteamID64s) into ``raw/steam/owned``.

    Every id is checked before any request; the API key comes from ``fetch.steam_api_key``
    (``GAMEREC_STEAM_API_KEY``). Private profiles are reported and remembered; calls are counted
    per UTC day against ``fetch.daily_limit``. Returns what was fetched, skipped and failed.
    """
    from gamerec.dataio.crawl import crawl_items
    from gamerec.dataio.steamweb import (
        KEY_HELP,
        DailyQuota,
        SavedLibraries,
        SteamWebClient,
        validate_steamids,
    )

    progress = reported(progress)
    wanted = validate_steamids(steamids)
    options = settings.fetch
    key = options.steam_api_key.get_secret_value().strip() if options.steam_api_key else ""
    if not key:
        raise ConfigError(f"no Steam Web API key: {KEY_HELP}")
    paths = Workspace.at(settings.data_dir)
    quota = DailyQuota(paths.quota_file, options.daily_limit)
    with SteamWebClient(
        key,
        options.steam_api_url,
        interval_s=options.steam_interval_s,
        before_request=quota.spend,
        **_retry_options(settings),
    ) as client:
        crawled = crawl_items(
            wanted, SavedLibraries(paths.owned), client.owned_games, client.http, progress
        )
    return FetchOwnedResult(
        **crawled.counts("private"),
        private_steamids=sorted(crawled.missing),
        calls_today=quota.used(),
        daily_limit=options.daily_limit,
        output=str(paths.owned),
    )
