# openrouter-spend on the official Airflow image (docker-compose.yaml builds it; see docs/deployment.md).
# The Python 3.11 variant: the plain tag ships Python 3.12, while the lock is compiled for 3.11 and the
# package declares requires-python >=3.11,<3.12.
FROM apache/airflow:3.3.2-python3.11

# The lock pins apache-airflow itself; naming it again (the upstream recipe) stops pip from ever moving
# Airflow, and naming the FAB provider makes pip check the image's auth manager against the lock.
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        apache-airflow-providers-fab \
        -r /opt/airflow/requirements.txt

COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 include /opt/airflow/include
COPY --chown=airflow:0 sql /opt/airflow/sql
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins

# Editable on purpose: the package finds sql/ and include/config/ relative to its own source folder,
# so it must run from /opt/airflow/include, not from a copy in site-packages.
RUN pip install --no-cache-dir --no-deps -e /opt/airflow

ENV OPENROUTER_SPEND_HOME=/opt/airflow/data
