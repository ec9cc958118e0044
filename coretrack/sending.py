"""(being written)"""


def start_worker_thread(app):
    return None
