-- Addresses a deployment's last plan hands out, claimed before converge makes anything,
-- so that two deployments planned at the same time never pick the same free address.
-- A deployment's claims are replaced whole at each plan and dropped when it is deleted.
CREATE TABLE ip_reservations (
    network    text NOT NULL,
    ip         text NOT NULL,
    deployment text NOT NULL,
    PRIMARY KEY (network, ip)
);
CREATE INDEX ip_reservations_deployment ON ip_reservations (deployment);
